"""Inspect: decode every image of a shard once; record metadata, corruption and content
hashes; write the uint8 cache at model resolution that training and embedding read.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel

from tasks.config import ChecksConfig
from tasks.decode import Corrupt, analysis_copy, decode_image, resize_square
from tasks.discover import Shard, read_manifest
from tasks.fingerprint import code_version, digest, stage_cache_key
from tasks.flags import sample_flags
from tasks.metadata import ANALYSIS_SIZE, METADATA_COLUMNS, image_metadata
from tasks.retry import is_transient_failure
from tasks.storage import MissingObjectError, ObjectInfo, Storage, open_storage

logger = logging.getLogger(__name__)

STATUS_OK, STATUS_CORRUPT, STATUS_DUPLICATE = "ok", "corrupt", "duplicate"
# Listed, then deleted or changed before it could be read: tried again next run.
STATUS_MISSING = "missing"
SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),
        ("kind", pa.string()),
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
    row: dict[str, object] = {"id": info.key, "key": info.key, "kind": "image"}
    try:
        data = storage.read_object(info)
    except MissingObjectError as error:
        logger.warning("%s", error)
        return _Inspected({**row, "status": STATUS_MISSING, "reason": str(error)}, None)
    row |= {
        "bytes": len(data),
        "content_hash": hashlib.blake2b(data, digest_size=16).hexdigest(),
    }
    decoded = decode_image(data, checks.max_image_pixels, max(ANALYSIS_SIZE, input_size))
    if isinstance(decoded, Corrupt):
        return _Inspected({**row, "status": STATUS_CORRUPT, "reason": decoded.reason}, None)
    row |= {"status": STATUS_OK, "width": decoded.width, "height": decoded.height}
    metadata = image_metadata(analysis_copy(decoded.rgb, ANALYSIS_SIZE))
    row |= metadata | {"flags": sample_flags({**metadata, "width": decoded.width, "height": decoded.height})}
    return _Inspected(row, resize_square(decoded.rgb, input_size))


def inspect_shard_files(
    shard: Shard, storage: Storage, input_size: int, checks: ChecksConfig, directory: Path
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
    # Decoding releases the GIL, so threads decode in parallel; map keeps the file order.
    # Reads from S3 wait on the network, so a few more threads than cores keep it busy;
    # each holds one file's bytes at a time, so memory stays bounded.
    with (
        ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1) + 4) as pool,
        (partial / IMAGES_FILE).open("wb") as images,
    ):
        for result in pool.map(lambda o: inspect_sample(o, storage, input_size, checks), objects):
            row = {**result.row, "shard": shard.index, "cache_row": -1}
            if result.pixels is not None:
                images.write(result.pixels.tobytes())
                row["cache_row"] = ok
                ok += 1
            rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), partial / SAMPLES_FILE)
    if directory.exists():  # a concurrent run finished the same shard first
        shutil.rmtree(partial)
    else:
        partial.replace(directory)
    corrupt = len(rows) - ok
    logger.info("shard %d: %d images, %d corrupt", shard.index, ok, corrupt)
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
    cache_dir: Path,
) -> ShardInspection:
    key = digest(shard.fingerprint, str(input_size), checks.model_dump_json(), code_version())
    storage = open_storage(source, aws_credentials)
    return inspect_shard_files(shard, storage, input_size, checks, cache_dir / "inspect" / key)


@task(name="collect-samples")
def collect_samples(
    inspections: list[ShardInspection], checks: ChecksConfig, known_hashes: dict[str, str], cache_dir: Path
) -> SampleTable:
    # Named by content so that tasks downstream, keyed on this record, stay cached.
    known = "".join(f"{h}{i}" for h, i in sorted(known_hashes.items()))
    key = digest(*(i.directory for i in inspections), checks.model_dump_json(), known, code_version())
    return collect_sample_rows(inspections, checks, known_hashes, cache_dir / "samples" / f"{key}.parquet")
