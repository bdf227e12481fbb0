"""Ground floor: the Storage interface (local folders, S3), the shard store, retries."""
