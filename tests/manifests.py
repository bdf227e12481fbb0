"""Manifest rows for the datapool tests: clean images, in the manifest's schema."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tasks.records.manifest import MANIFEST_SCHEMA


def image_rows(ids: list[str], vectors: np.ndarray, selected: bool, run_id: str) -> pa.Table:
    """Clean image rows of `ids` (each its own key) with `vectors`, all `selected` or none. Shape: (N, D)"""
    count = len(ids)
    return pa.table(
        {
            "id": ids,
            "key": ids,
            "version": ["v1"] * count,
            "size": [1] * count,
            "status": ["ok"] * count,
            "reason": pa.nulls(count, pa.string()),
            "content_hash": ids,
            "embedding": np.asarray(vectors, dtype=np.float32).tolist(),
            "selected": [selected] * count,
            "run_id": [run_id] * count,
        },
        schema=MANIFEST_SCHEMA,
    )
