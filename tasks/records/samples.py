"""The samples table (one row a file or video frame) and a shard's inspection results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from tasks.records.shards import Shard
from tasks.storage.shard_store import ShardStore

# The image metadata columns (tasks/media/metadata.py computes them).
METADATA_COLUMNS = (
    "luminance",
    "contrast",
    "sharpness",
    "snr",
    "uniform_row_ratio",
    "entropy",
    "grayscale",
)

STATUS_OK, STATUS_CORRUPT, STATUS_DUPLICATE = "ok", "corrupt", "duplicate"

# Listed, then deleted or changed before it could be read: tried again next run.
STATUS_MISSING = "missing"
# Listed, but it could not be read (permissions, an archive storage class, a store that kept
# failing on it): recorded with the reason, and tried again next run.
STATUS_UNREADABLE = "unreadable"
# The content of a datapool sample whose key is gone: the same sample, moved or renamed. It
# keeps its embedding and its selected flag under the new key, and is never a candidate.
STATUS_MOVED = "moved"

SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),
        ("kind", pa.string()),  # image, frame (of the video `key`), or video (a bad one)
        ("frame_index", pa.int32()),  # frames only: position in the video, presentation order
        ("timestamp_s", pa.float64()),  # frames only: pts * time_base
        ("status", pa.string()),
        ("reason", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        *[(name, pa.float64()) for name in METADATA_COLUMNS],
        ("content_hash", pa.string()),
        ("duplicate_of", pa.string()),
        ("flags", pa.list_(pa.string())),
        # Where the sample's pixels are in the uint8 cache; internal, not published.
        ("shard", pa.int32()),
        ("cache_row", pa.int32()),
    ]
)

INTERNAL_COLUMNS = ("shard", "cache_row")

SAMPLES_FILE, IMAGES_FILE = "samples.parquet", "images.u8"

INSPECT_FOLDER = "inspect"

KIND_IMAGE, KIND_FRAME, KIND_VIDEO = "image", "frame", "video"


class ShardInspection(BaseModel, frozen=True):
    """Where one shard's inspection results are (`folder` in `store`), and what they hold."""

    shard: Shard
    store: ShardStore
    folder: str
    ok: int
    corrupt: int
    input_size: int

    @property
    def location(self) -> str:
        """Names the results uniquely: the keys of results computed from them include it."""
        return f"{self.store.root}/{self.folder}"

    @property
    def _row_bytes(self) -> int:
        return self.input_size * self.input_size * 3

    def samples_file(self, scratch: Path) -> Path:
        """The shard's samples table as a local file (fetched into `scratch` if remote)."""
        return self.store.fetch(f"{self.folder}/{SAMPLES_FILE}", scratch)

    def open_images(self, scratch: Path) -> np.ndarray:
        """The shard's uint8 cache as a read-only memmap (fetched into `scratch` if remote).

        Shape: (ok, S, S, 3)
        """
        if self.ok == 0:
            return np.zeros((0, self.input_size, self.input_size, 3), dtype=np.uint8)
        shape = (self.ok, self.input_size, self.input_size, 3)
        path = self.store.fetch(f"{self.folder}/{IMAGES_FILE}", scratch)
        return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)

    def image(self, row: int) -> np.ndarray:
        """One cached image, read alone (a ranged read from a remote store).

        For readers that show a few images of many shards. Shape: (S, S, 3)
        """
        data = self.store.read_range(f"{self.folder}/{IMAGES_FILE}", row * self._row_bytes, self._row_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.input_size, self.input_size, 3)


def mark_duplicates(
    samples: pa.Table, duplicates: dict[str, tuple[str, str]], status_name: str = STATUS_DUPLICATE
) -> pa.Table:
    """Mark the ok samples in `duplicates` ({id: (the id it duplicates, reason)}) as duplicates.

    Or with `status_name` (moved: {id: (the datapool's id it was, reason)}). Shape: rows in,
    same rows out.
    """
    status = samples["status"].to_pylist()
    reason = samples["reason"].to_pylist()
    duplicate_of = samples["duplicate_of"].to_pylist()
    for row, sample_id in enumerate(samples["id"].to_pylist()):
        if sample_id in duplicates and status[row] == STATUS_OK:
            duplicate_of[row], reason[row] = duplicates[sample_id]
            status[row] = status_name
    for name, values in (("status", status), ("reason", reason), ("duplicate_of", duplicate_of)):
        index = samples.schema.get_field_index(name)
        samples = samples.set_column(index, name, pa.array(values, pa.string()))
    return samples


class SampleTable(BaseModel, frozen=True):
    """The samples a run processed (SAMPLE_SCHEMA), and how many of each status."""

    path: str
    processed: int
    ok: int
    corrupt: int
    duplicates: int
    missing: int
    unreadable: int = 0
    moved: int = 0


def count_statuses(table: pa.Table) -> dict[str, int]:
    """SampleTable's counts of a samples table."""
    counts = {
        s: int(pc.sum(pc.equal(table["status"], s)).as_py() or 0)
        for s in (
            STATUS_OK,
            STATUS_CORRUPT,
            STATUS_DUPLICATE,
            STATUS_MISSING,
            STATUS_UNREADABLE,
            STATUS_MOVED,
        )
    }
    return {
        "ok": counts[STATUS_OK],
        "corrupt": counts[STATUS_CORRUPT],
        "duplicates": counts[STATUS_DUPLICATE],
        "missing": counts[STATUS_MISSING],
        "unreadable": counts[STATUS_UNREADABLE],
        "moved": counts[STATUS_MOVED],
    }
