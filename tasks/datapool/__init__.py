"""The datapool: the block, its versioned state and manifest, committed last."""
