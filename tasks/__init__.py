"""One module a stage: pure functions and the thin Prefect @task that wraps them."""
