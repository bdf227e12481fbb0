"""Inspect: decode every image and every sampled video frame of a shard once; record
metadata, corruption and content hashes; write the uint8 cache at model resolution that
training and embedding read.

Per shard, in `inspect/<key>/` of the run's shard store (tasks/shard_store.py):
    samples.parquet  one row a file (SAMPLE_SCHEMA)
    images.u8        uint8 (n_ok, S, S, 3), row `cache_row` of each ok sample
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image
from prefect import task
from pydantic import BaseModel

from tasks.config import ChecksConfig, VideoConfig
from tasks.decode import Corrupt, analysis_copy, decode_image, resize_square
from tasks.discover import Shard, read_manifest
from tasks.fingerprint import code_version, digest, stage_cache_key
from tasks.flags import sample_flags
from tasks.metadata import ANALYSIS_SIZE, METADATA_COLUMNS, image_metadata
from tasks.retry import RETRY_TRANSIENT
from tasks.shard_store import FETCHED_FOLDER, ShardStore
from tasks.storage import MissingObjectError, ObjectInfo, Storage, open_storage
from tasks.video import frame_id, is_video_key, sample_frames

logger = logging.getLogger(__name__)

STATUS_OK, STATUS_CORRUPT, STATUS_DUPLICATE = "ok", "corrupt", "duplicate"
# Listed, then deleted or changed before it could be read: tried again next run.
STATUS_MISSING = "missing"
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
        """The shard's uint8 cache as a read-only memmap (fetched into `scratch` if
        remote). Shape: (ok, S, S, 3)"""
        if self.ok == 0:
            return np.zeros((0, self.input_size, self.input_size, 3), dtype=np.uint8)
        shape = (self.ok, self.input_size, self.input_size, 3)
        path = self.store.fetch(f"{self.folder}/{IMAGES_FILE}", scratch)
        return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)

    def image(self, row: int) -> np.ndarray:
        """One cached image, read alone (a ranged read from a remote store), for readers
        that show a few images of many shards. Shape: (S, S, 3)"""
        data = self.store.read_range(f"{self.folder}/{IMAGES_FILE}", row * self._row_bytes, self._row_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.input_size, self.input_size, 3)


@dataclass
class _Inspected:
    row: dict[str, object]
    pixels: np.ndarray | None


def inspect_sample(info: ObjectInfo, storage: Storage, input_size: int, checks: ChecksConfig) -> _Inspected:
    """Read, hash, decode and measure one file. Never raises for a bad or vanished file."""
    row: dict[str, object] = {"id": info.key, "key": info.key, "kind": KIND_IMAGE}
    try:
        data = storage.read_object(info)
    except MissingObjectError as error:
        logger.warning("%s", error)
        return _Inspected({**row, "status": STATUS_MISSING, "reason": str(error)}, None)
    row |= {
        "bytes": len(data),
        "content_hash": hashlib.blake2b(data, digest_size=16).hexdigest(),
    }
    decoded = decode_image(data, checks.max_image_pixels, input_size, ANALYSIS_SIZE)
    if isinstance(decoded, Corrupt):
        return _Inspected({**row, "status": STATUS_CORRUPT, "reason": decoded.reason}, None)
    return measured(row, decoded.rgb, decoded.width, decoded.height, input_size)


def measured(
    row: dict[str, object], rgb: Image.Image, width: int, height: int, input_size: int
) -> _Inspected:
    """`row` completed with a clean sample's size, metadata and flags, and its pixels at
    model resolution. `width` and `height` are the original's (`rgb` may be reduced)."""
    metadata = image_metadata(analysis_copy(rgb, ANALYSIS_SIZE))
    size = {"width": width, "height": height}
    row = row | {"status": STATUS_OK, **size, **metadata, "flags": sample_flags(metadata | size)}
    return _Inspected(row, resize_square(rgb, input_size))


def file_hash(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def frame_hash(video_hash: str, index: int) -> str:
    """A frame's content hash: its video's bytes and its index, not its pixels. Two copies
    of one video then have the same frames (the second's are exact duplicates), while the
    identical frames of a static camera within one video stay distinct samples: telling
    those apart is the near-duplicate check's job, on what the frames show."""
    return hashlib.blake2b(f"{video_hash}#frame={index}".encode(), digest_size=16).hexdigest()


def inspect_video(
    info: ObjectInfo, storage: Storage, input_size: int, video: VideoConfig, scratch: Path
) -> Iterator[_Inspected]:
    """A row for each sampled frame as it is decoded, then a corrupt row for the video
    itself (id: its key) if it cannot be read or breaks midway. Never raises for a bad or
    vanished file."""
    row: dict[str, object] = {"id": info.key, "key": info.key, "kind": KIND_VIDEO}
    try:
        with storage.local_file(info, scratch) as path:
            video_hash = file_hash(path)
            row |= {"bytes": info.size, "content_hash": video_hash}
            if info.size == 0:
                yield _Inspected({**row, "status": STATUS_CORRUPT, "reason": "zero-byte file"}, None)
                return
            for item in sample_frames(path, video):
                if isinstance(item, Corrupt):
                    yield _Inspected({**row, "status": STATUS_CORRUPT, "reason": item.reason}, None)
                    continue
                frame = {
                    "id": frame_id(info.key, item.index),
                    "key": info.key,
                    "kind": KIND_FRAME,
                    "frame_index": item.index,
                    "timestamp_s": item.seconds,
                    "content_hash": frame_hash(video_hash, item.index),
                }
                height, width = item.rgb.shape[:2]
                yield measured(frame, Image.fromarray(item.rgb), width, height, input_size)
    except MissingObjectError as error:
        logger.warning("%s", error)
        yield _Inspected({**row, "status": STATUS_MISSING, "reason": str(error)}, None)


def inspect_shard_files(
    objects: list[ObjectInfo],
    shard_index: int,
    storage: Storage,
    input_size: int,
    checks: ChecksConfig,
    video: VideoConfig,
    directory: Path,
) -> tuple[int, int]:
    """Inspect every one of `objects` (shard `shard_index`) into the empty folder
    `directory`: its samples table and uint8 cache. Returns (ok, corrupt) counts."""
    rows: list[dict[str, object]] = []
    ok = 0
    videos = [o for o in objects if is_video_key(o.key)]
    scratch = directory / "downloads"
    scratch.mkdir()
    # Decoding releases the GIL, so threads decode images in parallel. Reads from S3 wait
    # on the network, so a few more threads than cores keep it busy; each holds one file's
    # bytes at a time, so memory stays bounded. Videos follow one at a time, their frames
    # streamed straight into the cache (FFmpeg's own threads decode each in parallel).
    with (
        ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1) + 4) as pool,
        (directory / IMAGES_FILE).open("wb") as images,
    ):
        results = chain(
            pool.map(
                lambda o: inspect_sample(o, storage, input_size, checks),
                [o for o in objects if not is_video_key(o.key)],
            ),
            chain.from_iterable(inspect_video(o, storage, input_size, video, scratch) for o in videos),
        )
        for result in results:
            row = {**result.row, "shard": shard_index, "cache_row": -1}
            if result.pixels is not None:
                images.write(result.pixels.tobytes())
                row["cache_row"] = ok
                ok += 1
            rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), directory / SAMPLES_FILE)
    scratch.rmdir()
    corrupt = len(rows) - ok
    logger.info("shard %d: %d clean samples (%d videos), %d corrupt", shard_index, ok, len(videos), corrupt)
    return ok, corrupt


def inspect_shard_into(
    shard: Shard,
    storage: Storage,
    input_size: int,
    checks: ChecksConfig,
    video: VideoConfig,
    store: ShardStore,
    folder: str,
) -> ShardInspection:
    """Inspect `shard` into `folder` of `store`; a folder already complete is kept."""
    samples_key = f"{folder}/{SAMPLES_FILE}"
    if store.exists(samples_key):
        statuses = pq.read_table(pa.BufferReader(store.read_bytes(samples_key)), columns=["status"])
        ok = int(pc.sum(pc.equal(statuses["status"], STATUS_OK)).as_py() or 0)
        corrupt = statuses.num_rows - ok
    else:
        with store.writing(folder, last=SAMPLES_FILE) as directory:
            objects = read_manifest(shard, store)
            ok, corrupt = inspect_shard_files(
                objects, shard.index, storage, input_size, checks, video, directory
            )
    return ShardInspection(
        shard=shard, store=store, folder=folder, ok=ok, corrupt=corrupt, input_size=input_size
    )


def mark_duplicates(samples: pa.Table, duplicates: dict[str, tuple[str, str]]) -> pa.Table:
    """Mark the ok samples in `duplicates` ({id: (the id it duplicates, reason)}) as
    duplicates. Shape: rows in, same rows out."""
    status = samples["status"].to_pylist()
    reason = samples["reason"].to_pylist()
    duplicate_of = samples["duplicate_of"].to_pylist()
    for row, sample_id in enumerate(samples["id"].to_pylist()):
        if sample_id in duplicates and status[row] == STATUS_OK:
            duplicate_of[row], reason[row] = duplicates[sample_id]
            status[row] = STATUS_DUPLICATE
    for name, values in (("status", status), ("reason", reason), ("duplicate_of", duplicate_of)):
        index = samples.schema.get_field_index(name)
        samples = samples.set_column(index, name, pa.array(values, pa.string()))
    return samples


def mark_exact_duplicates(samples: pa.Table, known: dict[str, str] | None = None) -> pa.Table:
    """Mark every ok sample whose content hash an earlier ok sample (in id order), or a
    sample of the datapool (`known`: content hash -> id), already has as a duplicate of
    that sample. Shape: rows in, same rows out."""
    first_with_hash: dict[str, str] = dict(known or {})
    duplicates: dict[str, tuple[str, str]] = {}
    for sample_id, content_hash, status in zip(
        samples["id"].to_pylist(),
        samples["content_hash"].to_pylist(),
        samples["status"].to_pylist(),
        strict=True,
    ):
        if status != STATUS_OK:
            continue
        original = first_with_hash.setdefault(content_hash, sample_id)
        if original != sample_id:
            duplicates[sample_id] = (original, f"exact duplicate of {original}")
    return mark_duplicates(samples, duplicates)


class SampleTable(BaseModel, frozen=True):
    """The samples a run processed (SAMPLE_SCHEMA), and how many of each status."""

    path: str
    processed: int
    ok: int
    corrupt: int
    duplicates: int
    missing: int


def collect_sample_rows(
    inspections: list[ShardInspection],
    checks: ChecksConfig,
    known_hashes: dict[str, str],
    path: Path,
    scratch: Path,
) -> SampleTable:
    """Concatenate the shards' rows in id order, mark duplicates (also of the datapool's
    samples in `known_hashes`), write `path`. Remote shards' tables are fetched into `scratch`."""
    tables = [pq.read_table(i.samples_file(scratch)) for i in inspections]
    table = pa.concat_tables(tables).sort_by("id") if tables else SAMPLE_SCHEMA.empty_table()
    if checks.remove_exact_duplicates:
        table = mark_exact_duplicates(table, known_hashes)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return SampleTable(path=str(path), processed=table.num_rows, **count_statuses(table))


def count_statuses(table: pa.Table) -> dict[str, int]:
    """SampleTable's counts of a samples table."""
    counts = {
        s: int(pc.sum(pc.equal(table["status"], s)).as_py() or 0)
        for s in (STATUS_OK, STATUS_CORRUPT, STATUS_DUPLICATE, STATUS_MISSING)
    }
    return {
        "ok": counts[STATUS_OK],
        "corrupt": counts[STATUS_CORRUPT],
        "duplicates": counts[STATUS_DUPLICATE],
        "missing": counts[STATUS_MISSING],
    }


@task(
    name="inspect-shard",
    cache_key_fn=stage_cache_key("inspect"),
    persist_result=True,
    **RETRY_TRANSIENT,
)
def inspect_shard(
    shard: Shard,
    source: str,
    aws_credentials: str | None,
    input_size: int,
    checks: ChecksConfig,
    video: VideoConfig,
    shards: ShardStore,
) -> ShardInspection:
    settings = (checks.model_dump_json(), video.model_dump_json())
    key = digest(shard.fingerprint, str(input_size), *settings, code_version())
    storage = open_storage(source, aws_credentials)
    return inspect_shard_into(shard, storage, input_size, checks, video, shards, f"{INSPECT_FOLDER}/{key}")


@task(name="collect-samples")
def collect_samples(
    inspections: list[ShardInspection], checks: ChecksConfig, known_hashes: dict[str, str], cache_dir: Path
) -> SampleTable:
    # Named by content so that tasks downstream, keyed on this record, stay cached.
    known = "".join(f"{h}{i}" for h, i in sorted(known_hashes.items()))
    key = digest(*(i.location for i in inspections), checks.model_dump_json(), known, code_version())
    path = cache_dir / "samples" / f"{key}.parquet"
    return collect_sample_rows(inspections, checks, known_hashes, path, cache_dir / FETCHED_FOLDER)
