"""The run report: its numbers, plots, HTML and PDF."""
