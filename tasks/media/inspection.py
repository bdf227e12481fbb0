"""Inspect a shard: decode every image and every sampled video frame of it once.

Record metadata, corruption and content hashes; write the uint8 cache at model resolution
that training and embedding read.

Per shard, in `inspect/<key>/` of the run's shard store (tasks/storage/shard_store.py):
    samples.parquet  one row a file (SAMPLE_SCHEMA)
    images.u8        uint8 (n_ok, S, S, 3), row `cache_row` of each ok sample
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from tasks.config import ChecksConfig, VideoConfig
from tasks.fingerprint import code_version, digest
from tasks.media.decode import Corrupt
from tasks.media.examine import (
    Examined,
    bytes_hash,
    examine_image,
    examine_images,
    fits_a_process,
    measured,
)
from tasks.media.processes import decoding_executor, decoding_processes, replace_broken
from tasks.media.video import sample_frames
from tasks.records.keys import frame_id, is_video_key
from tasks.records.plan import RunPlan, known_content_hashes, vanished_content
from tasks.records.samples import (
    IMAGES_FILE,
    KIND_FRAME,
    KIND_IMAGE,
    KIND_VIDEO,
    SAMPLE_SCHEMA,
    SAMPLES_FILE,
    STATUS_CORRUPT,
    STATUS_MISSING,
    STATUS_MOVED,
    STATUS_OK,
    STATUS_UNREADABLE,
    SampleTable,
    ShardInspection,
    count_statuses,
    mark_duplicates,
)
from tasks.records.shards import Shard, read_shard_manifest
from tasks.storage.atomic import written_atomically
from tasks.storage.interface import MissingObjectError, ObjectInfo, Storage, UnreadableObjectError
from tasks.storage.shard_store import ShardStore

logger = logging.getLogger(__name__)


@dataclass
class _Inspected:
    row: dict[str, object]
    pixels: np.ndarray | None


def unread(row: dict[str, object], error: Exception) -> dict[str, object]:
    """The row of a listed file that could not be read, with the reason; both kinds are tried again next run.

    Gone or changed since it was listed: missing. Denied, archived, or a store that kept
    failing on it after every retry (a ConnectionError): unreadable. One such file never
    stops the run.
    """
    logger.warning("%s", error)
    status = STATUS_MISSING if isinstance(error, MissingObjectError) else STATUS_UNREADABLE
    return {**row, "status": status, "reason": str(error)}


def read_files(infos: list[ObjectInfo], storage: Storage) -> list[bytes | _Inspected]:
    """Each file's bytes, or the row of one that could not be read. Never raises for a vanished file."""
    results: list[bytes | _Inspected] = []
    for info in infos:
        try:
            results.append(storage.read_object(info))
        except (MissingObjectError, UnreadableObjectError, ConnectionError) as error:
            results.append(_Inspected(unread(image_row(info), error), None))
    return results


def image_row(info: ObjectInfo) -> dict[str, object]:
    """The start of an image file's sample row."""
    return {"id": info.key, "key": info.key, "kind": KIND_IMAGE}


def inspect_images(
    infos: list[ObjectInfo], storage: Storage, input_size: int, checks: ChecksConfig, processes: int = 0
) -> list[_Inspected]:
    """Read, hash, decode and measure a batch of image files, in order. Never raises for a bad file.

    With `processes` (a count), the files a decoding process may take (tasks/media/examine.py
    `fits_a_process`) are examined in one, in one call; the rest in this thread.
    """
    read = read_files(infos, storage)
    files = {i: data for i, data in enumerate(read) if isinstance(data, bytes)}
    remote = [i for i, data in files.items() if fits_a_process(data)] if processes else []
    examined = dict(
        zip(
            remote,
            examined_in_processes([files[i] for i in remote], processes, checks, input_size),
            strict=True,
        )
    )
    for i, data in files.items():
        if i not in examined:
            examined[i] = examine_image(data, checks.max_image_pixels, input_size, checks.jpeg_decoder)
    return [
        item if isinstance(item, _Inspected) else inspected(image_row(infos[i]), examined[i])
        for i, item in enumerate(read)
    ]


def examined_in_processes(
    files: list[bytes], processes: int, checks: ChecksConfig, input_size: int
) -> list[Examined]:
    """`files` examined in a decoding process, in order.

    A worker that dies (a decoder's crash, the kernel's OOM killer, a kill) takes its batch
    with it: each file of the batch is then tried alone in a new worker, and one that ends
    its worker again is recorded corrupt with the reason, so one bad file never stops a run.
    """
    if not files:
        return []
    pool = decoding_executor(processes)
    try:
        return list(
            pool.submit(
                examine_images, files, checks.max_image_pixels, input_size, checks.jpeg_decoder
            ).result()
        )
    except BrokenProcessPool as error:
        replace_broken(pool)
        logger.warning(
            "a decoding process ended (%s): its %d files are tried one at a time", error, len(files)
        )
        if len(files) > 1:
            return [
                result
                for data in files
                for result in examined_in_processes([data], processes, checks, input_size)
            ]
        fields = {
            "bytes": len(files[0]),
            "content_hash": bytes_hash(files[0]),
            "status": STATUS_CORRUPT,
            "reason": f"cannot decode: the decoding process ended while decoding it ({error})",
        }
        return [Examined(fields, None)]


def inspected(row: dict[str, object], result: Examined) -> _Inspected:
    """`row` completed with what examining its file or frame measured."""
    return _Inspected(row | result.fields, result.pixels)


def file_hash(path: Path) -> str:
    """The 16-byte BLAKE2b hex digest of the file's content."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def frame_hash(video_hash: str, index: int) -> str:
    """A frame's content hash: its video's bytes and its index, not its pixels.

    Two copies of one video then have the same frames (the second's are exact duplicates),
    while the identical frames of a static camera within one video stay distinct samples:
    telling those apart is the near-duplicate check's job, on what the frames show.
    """
    return hashlib.blake2b(f"{video_hash}#frame={index}".encode(), digest_size=16).hexdigest()


def inspect_video(
    info: ObjectInfo, storage: Storage, input_size: int, video: VideoConfig, scratch: Path
) -> Iterator[_Inspected]:
    """A row for each sampled frame as it is decoded, then maybe a corrupt row for the video.

    The corrupt row is the video's own (id: its key), if it cannot be read or breaks midway.
    Never raises for a bad or vanished file.
    """
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
                yield inspected(frame, measured(Image.fromarray(item.rgb), width, height, input_size))
    except (MissingObjectError, UnreadableObjectError, ConnectionError) as error:
        yield _Inspected(unread(row, error), None)


# Samples table rows held in memory before they are written (about 1.6 kB each).
ROWS_PER_BATCH = 4096

# Image files a thread reads and decodes together (one call to a decoding process), and
# the most bytes of them it holds at once. Each call costs both processes some CPU of its
# own: over 1,200 photos of 640x480 on 2 cores, batches of 32 cost 1.47-1.49 CPU-ms an
# image where 16 cost 1.48-1.53 (benchmarks.inspect, two runs each, alternated); a
# 2,000-file shard is still 63 batches for the threads to share.
FILES_PER_READ = 32
BYTES_PER_READ = 16 * 2**20


def inspecting_threads(storage: Storage) -> int:
    """Threads a shard's inspection reads and decodes on: see inspect_shard_files."""
    cores = os.cpu_count() or 1
    return 2 * cores + 4 if storage.over_network else cores + 1


def read_batches(objects: list[ObjectInfo]) -> list[list[ObjectInfo]]:
    """`objects` in order, in batches of at most FILES_PER_READ files and BYTES_PER_READ bytes.

    A file larger than BYTES_PER_READ is a batch of its own.
    """
    batches: list[list[ObjectInfo]] = []
    size = 0
    for info in objects:
        if not batches or len(batches[-1]) == FILES_PER_READ or size + info.size > BYTES_PER_READ:
            batches.append([])
            size = 0
        batches[-1].append(info)
        size += info.size
    return batches


def inspect_shard_files(
    objects: list[ObjectInfo],
    shard_index: int,
    storage: Storage,
    input_size: int,
    checks: ChecksConfig,
    video: VideoConfig,
    directory: Path,
) -> tuple[int, int]:
    """Inspect every one of `objects` (shard `shard_index`) into the empty folder `directory`.

    The folder gets its samples table and uint8 cache. Returns (ok, corrupt) counts.
    """
    batch: list[dict[str, object]] = []
    ok = written = 0
    videos = [o for o in objects if is_video_key(o.key)]
    processes = decoding_processes()
    scratch = directory / "downloads"
    scratch.mkdir()
    # Images go in small batches (read_batches) to the threads, which read them and decode
    # them in a decoding process (tasks/media/processes.py) or themselves: Pillow's decoders
    # release the GIL, the rest of an image's work does not. From a local disk, one thread
    # more than cores: more only fight over the GIL (8 threads on 2 cores inspected 635
    # images/s, 3 threads 1,053). Reads from S3 wait on the network, so twice the cores and
    # more keep it busy. Each thread holds one batch's bytes at a time: memory stays bounded.
    # Videos follow one at a time, their frames streamed straight into the cache (FFmpeg's
    # own threads decode each in parallel).
    # Rows go to the samples table a batch at a time: an hour of video is 100,000 frames.
    with (
        ThreadPoolExecutor(max_workers=inspecting_threads(storage)) as pool,
        (directory / IMAGES_FILE).open("wb") as images,
        pq.ParquetWriter(directory / SAMPLES_FILE, SAMPLE_SCHEMA) as table,
    ):
        batches = read_batches([o for o in objects if not is_video_key(o.key)])
        results = chain(
            chain.from_iterable(
                pool.map(lambda b: inspect_images(b, storage, input_size, checks, processes), batches)
            ),
            chain.from_iterable(inspect_video(o, storage, input_size, video, scratch) for o in videos),
        )
        for result in results:
            row = {**result.row, "shard": shard_index, "cache_row": -1}
            if result.pixels is not None:
                images.write(result.pixels.tobytes())
                row["cache_row"] = ok
                ok += 1
            batch.append(row)
            if len(batch) == ROWS_PER_BATCH:
                table.write_table(pa.Table.from_pylist(batch, schema=SAMPLE_SCHEMA))
                written += len(batch)
                batch.clear()
        table.write_table(pa.Table.from_pylist(batch, schema=SAMPLE_SCHEMA))
        written += len(batch)
    scratch.rmdir()
    corrupt = written - ok
    frames = f" (with the frames of {len(videos)} video{'' if len(videos) == 1 else 's'})" if videos else ""
    logger.info("shard %d: %d clean samples%s, %d corrupt", shard_index, ok, frames, corrupt)
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
            objects = read_shard_manifest(shard, store)
            ok, corrupt = inspect_shard_files(
                objects, shard.index, storage, input_size, checks, video, directory
            )
    return ShardInspection(
        shard=shard, store=store, folder=folder, ok=ok, corrupt=corrupt, input_size=input_size
    )


def mark_exact_duplicates(samples: pa.Table, known: dict[str, str] | None = None) -> pa.Table:
    """Mark every ok sample whose content hash an earlier sample already has as its duplicate.

    The earlier sample is an earlier ok sample (in id order), or a sample of the datapool
    (`known`: content hash -> id); the sample is marked a duplicate of that sample.
    Shape: rows in, same rows out.
    """
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


def mark_moved(samples: pa.Table, vanished: dict[str, tuple[str, str]]) -> tuple[pa.Table, dict[str, str]]:
    """Mark each ok sample that holds the content of a vanished datapool sample as that sample, moved.

    `vanished`: content hash -> (id, key) of the datapool's clean samples whose key is no
    longer listed. Each is claimed once, by the first sample in id order with its content.
    Returns the table (rows in, same rows out) and content hash -> new id of the moved ones.
    """
    moved: dict[str, tuple[str, str]] = {}
    claimed: dict[str, str] = {}
    for sample_id, content_hash, status in zip(
        samples["id"].to_pylist(),
        samples["content_hash"].to_pylist(),
        samples["status"].to_pylist(),
        strict=True,
    ):
        if status == STATUS_OK and content_hash in vanished and content_hash not in claimed:
            old_id, old_key = vanished[content_hash]
            claimed[content_hash] = sample_id
            moved[sample_id] = (old_id, f"moved or renamed: was {old_key}")
    return mark_duplicates(samples, moved, STATUS_MOVED), claimed


def collect_sample_rows(
    inspections: list[ShardInspection],
    checks: ChecksConfig,
    run_plan: RunPlan,
    directory: Path,
    scratch: Path,
) -> SampleTable:
    """Concatenate the shards' rows in id order, mark moved samples and duplicates, write into `directory`.

    A sample with the content of a datapool sample whose key vanished (the plan's vanished
    rows) is that sample, moved: never new, never selected again. Duplicates are marked also
    of the datapool's samples the run keeps and of the moved ones; the pool is looked up for
    this run's content hashes only (never a dict of its every hash). Remote shards' tables
    are fetched into `scratch`.
    """
    tables = [pq.read_table(i.samples_file(scratch)) for i in inspections]
    table = pa.concat_tables(tables).sort_by("id") if tables else SAMPLE_SCHEMA.empty_table()
    vanished = vanished_content(run_plan)
    known = known_content_hashes(run_plan, table["content_hash"]) if checks.remove_exact_duplicates else {}
    # Named by what it is made of, so that tasks downstream, keyed on this record, stay cached
    # (a run over the same files with the same pool matches, whatever its plan is called).
    key = digest(
        *(i.location for i in inspections),
        checks.model_dump_json(),
        *(f"{h}\0{i}" for h, i in sorted(known.items())),
        *(f"{h}\0{i}\0{k}" for h, (i, k) in sorted(vanished.items())),
        code_version(),
    )
    path = directory / f"{key}.parquet"
    table, moved = mark_moved(table, vanished)
    if checks.remove_exact_duplicates:
        table = mark_exact_duplicates(table, known | moved)
    with written_atomically(path) as partial:
        pq.write_table(table, partial)
    return SampleTable(path=str(path), processed=table.num_rows, **count_statuses(table))
