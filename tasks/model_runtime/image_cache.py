"""The uint8 image cache of a run: every shard's memmap behind one index.

Training reads random batches across shards; embedding reads one shard in order. Neither
decodes anything: inspection decoded each image once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.records.samples import STATUS_OK, ShardInspection


class ImageCache:
    """Rows of all shards' caches, addressed by a global index (shard order, then row).

    Remote shards' caches are fetched into `scratch`.
    """

    def __init__(self, inspections: list[ShardInspection], scratch: Path) -> None:
        self._images = [inspection.open_images(scratch) for inspection in inspections]
        self._shard_position = {inspection.shard.index: p for p, inspection in enumerate(inspections)}
        sizes = [len(images) for images in self._images]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def global_index(self, shard_index: int, cache_row: int) -> int:
        """The global index of row `cache_row` of shard `shard_index`'s cache."""
        return int(self._offsets[self._shard_position[shard_index]] + cache_row)

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Images at `indices`, in that order.

        Shape: (n,) -> uint8 (n, S, S, 3)
        """
        shard = np.searchsorted(self._offsets, indices, side="right") - 1
        out = np.empty((len(indices), *self._images[0].shape[1:]), dtype=np.uint8)
        for position in np.unique(shard):
            chosen = np.flatnonzero(shard == position)
            rows = indices[chosen] - self._offsets[position]
            out[chosen] = self._images[position][rows]
        return out


def unique_image_indices(cache: ImageCache, samples_path: str) -> np.ndarray:
    """Global cache indices of the samples whose status is ok, in id order.

    Corrupt files and exact duplicates are left out.
    """
    table = pq.read_table(samples_path, columns=["status", "shard", "cache_row"]).to_pydict()
    return np.array(
        [
            cache.global_index(shard, row)
            for status, shard, row in zip(table["status"], table["shard"], table["cache_row"], strict=True)
            if status == STATUS_OK
        ],
        dtype=np.int64,
    )
