"""Media: decode images and video frames, measure metadata and flags, inspect shards."""
