"""Inspect: decode every image and every sampled video frame of a shard once; record
metadata, corruption and content hashes; write the uint8 cache at model resolution that
training and embedding read.

Per shard, in `<cache>/inspect/<key>/`:
    samples.parquet  one row a file (SAMPLE_SCHEMA)
    images.u8        uint8 (n_ok, S, S, 3), row `cache_row` of each ok sample
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
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
from tasks.retry import is_transient_failure
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
KIND_IMAGE, KIND_FRAME, KIND_VIDEO = "image", "frame", "video"


class ShardInspection(BaseModel, frozen=True):
    """Where one shard's inspection results are, and what they hold."""

    shard: Shard
    directory: str
    ok: int
    corrupt: int
    input_size: int

    @property
    def samples_path(self) -> Path:
        return Path(self.directory) / SAMPLES_FILE

    def open_images(self) -> np.ndarray:
        """The shard's uint8 cache as a read-only memmap. Shape: (ok, S, S, 3)"""
        if self.ok == 0:
            return np.zeros((0, self.input_size, self.input_size, 3), dtype=np.uint8)
        shape = (self.ok, self.input_size, self.input_size, 3)
        return np.memmap(Path(self.directory) / IMAGES_FILE, dtype=np.uint8, mode="r", shape=shape)


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
    shard: Shard,
    storage: Storage,
    input_size: int,
    checks: ChecksConfig,
    video: VideoConfig,
    directory: Path,
) -> ShardInspection:
    """Inspect every file of `shard` into `directory` (skipped when already complete)."""
    samples_path = directory / SAMPLES_FILE
    if samples_path.exists():
        table = pq.read_table(samples_path, columns=["status"])
        ok = int(pc.sum(pc.equal(table["status"], STATUS_OK)).as_py() or 0)
        return ShardInspection(
            shard=shard, directory=str(directory), ok=ok, corrupt=table.num_rows - ok, input_size=input_size
        )
    objects = read_manifest(shard)
    partial = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}.partial")
    partial.mkdir(parents=True)
    rows: list[dict[str, object]] = []
    ok = 0
    videos = [o for o in objects if is_video_key(o.key)]
    scratch = partial / "downloads"
    scratch.mkdir()
    # Decoding releases the GIL, so threads decode images in parallel. Reads from S3 wait
    # on the network, so a few more threads than cores keep it busy; each holds one file's
    # bytes at a time, so memory stays bounded. Videos follow one at a time, their frames
    # streamed straight into the cache (FFmpeg's own threads decode each in parallel).
    with (
        ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1) + 4) as pool,
        (partial / IMAGES_FILE).open("wb") as images,
    ):
        results = chain(
            pool.map(
                lambda o: inspect_sample(o, storage, input_size, checks),
                [o for o in objects if not is_video_key(o.key)],
            ),
            chain.from_iterable(inspect_video(o, storage, input_size, video, scratch) for o in videos),
        )
        for result in results:
            row = {**result.row, "shard": shard.index, "cache_row": -1}
            if result.pixels is not None:
                images.write(result.pixels.tobytes())
                row["cache_row"] = ok
                ok += 1
            rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), partial / SAMPLES_FILE)
    scratch.rmdir()
    if directory.exists():  # a concurrent run finished the same shard first
        shutil.rmtree(partial)
    else:
        partial.replace(directory)
    corrupt = len(rows) - ok
    logger.info("shard %d: %d clean samples (%d videos), %d corrupt", shard.index, ok, len(videos), corrupt)
    return ShardInspection(
        shard=shard, directory=str(directory), ok=ok, corrupt=corrupt, input_size=input_size
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
    inspections: list[ShardInspection], checks: ChecksConfig, known_hashes: dict[str, str], path: Path
) -> SampleTable:
    """Concatenate the shards' rows in id order, mark duplicates (also of the datapool's
    samples in `known_hashes`), write `path`."""
    tables = [pq.read_table(i.samples_path) for i in inspections]
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
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=is_transient_failure,
)
def inspect_shard(
    shard: Shard,
    source: str,
    aws_credentials: str | None,
    input_size: int,
    checks: ChecksConfig,
    video: VideoConfig,
    cache_dir: Path,
) -> ShardInspection:
    settings = (checks.model_dump_json(), video.model_dump_json())
    key = digest(shard.fingerprint, str(input_size), *settings, code_version())
    storage = open_storage(source, aws_credentials)
    return inspect_shard_files(shard, storage, input_size, checks, video, cache_dir / "inspect" / key)


@task(name="collect-samples")
def collect_samples(
    inspections: list[ShardInspection], checks: ChecksConfig, known_hashes: dict[str, str], cache_dir: Path
) -> SampleTable:
    # Named by content so that tasks downstream, keyed on this record, stay cached.
    known = "".join(f"{h}{i}" for h, i in sorted(known_hashes.items()))
    key = digest(*(i.directory for i in inspections), checks.model_dump_json(), known, code_version())
    return collect_sample_rows(inspections, checks, known_hashes, cache_dir / "samples" / f"{key}.parquet")
