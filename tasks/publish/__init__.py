"""Publish: write a run's files, selected frames and copies to the output."""
