"""Ingest: discover the source's samples and plan the run's shards."""
