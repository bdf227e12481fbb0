"""Prefect flows: `curate`, and the command line (`python -m flows`)."""
