"""The datapool's manifest: one row a processed sample, as Parquet segments in the output location.

A row whose id is null is a tombstone: it removes its key from the pool (tasks/records/segments.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),  # the object the sample came from (a frame's video)
        ("version", pa.string()),  # of the object  # ETag on S3, mtime in ns on a local disk
        ("size", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("content_hash", pa.string()),
        ("embedding", pa.list_(pa.float32())),  # null unless status is ok
        ("selected", pa.bool_()),
        ("run_id", pa.string()),  # the run that processed this version of the key
    ]
)


def embedding_column(vectors: list[np.ndarray | None]) -> pa.Array:
    """The manifest's embedding column: float32 lists, null where a vector is None."""
    values = [None if v is None else v.astype(np.float32).tolist() for v in vectors]
    return pa.array(values, pa.list_(pa.float32()))
