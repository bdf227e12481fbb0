"""State: read a datapool before a run, and commit the next version after it, last.

Layout in the output location (keys relative to it):

    datapool/<name>/versions/00000007.json              the committed state of version 7
    datapool/<name>/manifests/00000007-<run-id>.parquet  that version's manifest

A version is committed by creating its log entry with create-if-absent (S3 If-None-Match,
a hard link on a local disk): of two runs that started from version 6, exactly one
creates 00000007.json; the other fails with a clear message and changes nothing. The
Prefect block mirrors the newest entry; if a run dies between the two writes, the next
run reads the log, sees the block is behind and repairs it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from models.export import onnx_metadata
from tasks.datapool.block import Datapool
from tasks.fingerprint import digest, file_sha256
from tasks.records.embeddings import EmbeddingTable, read_embeddings
from tasks.records.manifest import MANIFEST_SCHEMA, embedding_column
from tasks.records.model import OnnxModel
from tasks.records.plan import RunPlan
from tasks.records.run import RunRecord
from tasks.records.samples import STATUS_MISSING, STATUS_MOVED, STATUS_UNREADABLE, SampleTable
from tasks.records.segments import read_live
from tasks.records.shards import read_listing
from tasks.selection.pool_index import build_segment_index, index_key
from tasks.storage.interface import MissingObjectError, Storage, StorageError, download_once

logger = logging.getLogger(__name__)


class DatapoolConflictError(RuntimeError):
    """Another run committed to the datapool while this one was working."""


class ModelPointers(BaseModel, frozen=True):
    """Where the model that produced a datapool's embeddings is, and what it is."""

    onnx: str
    onnx_sha256: str
    checkpoint: str | None
    input_size: int
    embedding_dim: int


def model_pointers(start: PoolStart, model: OnnxModel, artifacts: dict[str, str]) -> ModelPointers:
    """The model the datapool names after this run.

    Its own when it embedded with it, else the one this run published.
    """
    if start.model is not None and start.state.model_onnx is not None:
        return ModelPointers(
            onnx=start.state.model_onnx,
            onnx_sha256=start.state.model_onnx_sha256 or model.sha256,
            checkpoint=start.state.checkpoint,
            input_size=model.input_size,
            embedding_dim=model.embedding_dim,
        )
    return ModelPointers(
        onnx=artifacts["model.onnx"],
        onnx_sha256=model.sha256,
        checkpoint=artifacts.get("checkpoint.pt"),
        input_size=model.input_size,
        embedding_dim=model.embedding_dim,
    )


def utc_now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat()


def versions_prefix(name: str) -> str:
    """The prefix of datapool `name`'s commit log."""
    return f"datapool/{name}/versions"


def version_key(name: str, version: int) -> str:
    """The key of the commit log entry of datapool `name`'s `version`."""
    return f"{versions_prefix(name)}/{version:08d}.json"


def relative_key(storage: Storage, uri: str) -> str:
    """The key of `uri` inside `storage` (state holds URIs for people to read).

    Raises:
        ValueError: `uri` is not inside `storage`.
    """
    if not uri.startswith(f"{storage.uri}/"):
        raise ValueError(f"{uri} is not inside {storage.uri}")
    return uri[len(storage.uri) + 1 :]


def load_block(name: str) -> Datapool | None:
    """The Datapool block named `name`, or None if there is none."""
    try:
        return cast(Datapool, Datapool.load(name))
    except ValueError:  # Prefect's answer for "no block document with that name"
        return None


def read_state(name: str, storage: Storage) -> Datapool:
    """The datapool's newest committed state (version 0 and empty if it has none).

    Raises:
        ValueError: the block belongs to another output location.
    """
    block = load_block(name)
    if block is not None and block.output != storage.uri:
        raise ValueError(
            f"datapool {name!r} belongs to output {block.output}, not {storage.uri}: "
            "name another datapool or use that output"
        )
    log = sorted(info.key for info in storage.list_objects(versions_prefix(name)))
    if not log:
        if block is not None and block.version > 0:
            logger.warning(
                "datapool %r: the block is at version %d but %s holds no commit log: starting over",
                name,
                block.version,
                storage.uri,
            )
        return Datapool(output=storage.uri)
    state = Datapool.model_validate_json(storage.read_bytes(log[-1]))
    if block is None or block.version != state.version:
        logger.warning("datapool %r: block behind the commit log; repairing it to v%d", name, state.version)
        state.save(name, overwrite=True)
    return state


def pool_segments(state: Datapool) -> list[str]:
    """The URIs of the state's manifest segments, oldest first.

    A pool committed before segments has one whole manifest: its one base.
    """
    if state.segments:
        return list(state.segments)
    return [state.manifest] if state.manifest else []


def segment_file_name(uri: str) -> str:
    """The name of segment `uri`'s local copy."""
    return f"segment-{digest(uri)[:16]}.parquet"


def fetch_segments(state: Datapool, storage: Storage, directory: Path) -> list[str]:
    """Local copies of the state's segments, oldest first.

    A segment never changes once written, so each is downloaded once: a run fetches only the
    segments committed since its cache last saw the pool.
    """
    return [
        str(download_once(storage, relative_key(storage, uri), directory / segment_file_name(uri)))
        for uri in pool_segments(state)
    ]


def fetch_indexes(state: Datapool, storage: Storage, directory: Path) -> list[str | None]:
    """Local copies of the state's segments' indexes, aligned with them (None: a segment has none)."""
    indexes: list[str | None] = []
    for uri in pool_segments(state):
        path = directory / segment_file_name(uri).replace(".parquet", ".faiss")
        try:
            indexes.append(str(download_once(storage, index_key(relative_key(storage, uri)), path)))
        except MissingObjectError:  # small segments have none, and pools from before indexes
            indexes.append(None)
    return indexes


def fetch_model(state: Datapool, storage: Storage, directory: Path) -> Path:
    """The datapool's ONNX model, downloaded once and checked against its sha256.

    Raises:
        ValueError: the file's sha256 is not the one the state names.
    """
    if state.model_onnx is None or state.model_onnx_sha256 is None:
        raise ValueError(f"datapool at version {state.version} names no model")
    path = download_once(
        storage, relative_key(storage, state.model_onnx), directory / state.model_onnx_sha256 / "model.onnx"
    )
    if (actual := file_sha256(path)) != state.model_onnx_sha256:
        path.unlink()
        raise ValueError(
            f"the datapool's model {state.model_onnx} has sha256 {actual[:12]}..., not "
            f"{state.model_onnx_sha256[:12]}... as its state says: it was replaced after it was committed"
        )
    return path


def run_segment(
    run_plan: RunPlan,
    processed: pa.Table,
    embeddings: dict[str, np.ndarray],
    selected: set[str],
    run_id: str,
) -> pa.Table:
    """This run's manifest segment: the pool's changes, or the whole pool where nothing was kept.

    Tombstones for the keys the pool drops come first (tasks/records/segments.py), then a row
    for each processed sample that was read, by id. A missing or unreadable one is left out,
    so the next run tries it again. A moved one takes the row of the datapool sample it was,
    under its new id and key: its embedding, its selected flag and the run that processed it.

    `processed` has the samples table's columns id, key, status, reason, content_hash, duplicate_of.
    """
    listed_by_key = {info.key: info for info in read_listing(run_plan.listing)}
    previously_selected = set(run_plan.previously_selected)
    columns = processed.select(["id", "key", "status", "reason", "content_hash", "duplicate_of"]).to_pylist()
    new_rows = [r for r in columns if r["status"] not in (STATUS_MISSING, STATUS_UNREADABLE)]
    was = vanished_rows_by_id(run_plan, {r["duplicate_of"] for r in new_rows if r["status"] == STATUS_MOVED})
    rows = [
        {
            "id": r["id"],
            "status": r["status"],
            "reason": r["reason"],
            "content_hash": r["content_hash"],
            "embedding": embeddings.get(r["id"]),
            "selected": r["id"] in selected or r["id"] in previously_selected,
            "run_id": run_id,
        }
        | (moved_row(was[r["duplicate_of"]]) if r["status"] == STATUS_MOVED else {})
        for r in new_rows
    ]
    objects = [listed_by_key[r["key"]] for r in new_rows]
    fresh = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.string()),
            "key": pa.array([o.key for o in objects], pa.string()),
            "version": pa.array([o.version for o in objects], pa.string()),
            "size": pa.array([o.size for o in objects], pa.int64()),
            "status": pa.array([r["status"] for r in rows], pa.string()),
            "reason": pa.array([r["reason"] for r in rows], pa.string()),
            "content_hash": pa.array([r["content_hash"] for r in rows], pa.string()),
            "embedding": embedding_column([r["embedding"] for r in rows]),
            "selected": pa.array([r["selected"] for r in rows], pa.bool_()),
            "run_id": pa.array([r["run_id"] for r in rows], pa.string()),
        },
        schema=MANIFEST_SCHEMA,
    )
    if starts_over(run_plan):
        return fresh.sort_by("id")
    return pa.concat_tables([pq.read_table(run_plan.dropped).cast(MANIFEST_SCHEMA), fresh.sort_by("id")])


def starts_over(run_plan: RunPlan) -> bool:
    """Whether the run keeps nothing of the pool, so its segment holds the whole pool: a new base."""
    return run_plan.kept == 0


def vanished_rows_by_id(run_plan: RunPlan, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The datapool's rows `ids` among those whose key vanished, by id."""
    if not ids or run_plan.vanished_manifest is None:
        return {}
    return {r["id"]: r for r in pq.read_table(run_plan.vanished_manifest).to_pylist() if r["id"] in ids}


def moved_row(was: dict[str, Any]) -> dict[str, Any]:
    """What a moved sample keeps of the datapool row it was: a clean sample, as embedded and picked."""
    embedding = None if was["embedding"] is None else np.asarray(was["embedding"], dtype=np.float32)
    return {
        "status": was["status"],
        "reason": None,
        "embedding": embedding,
        "selected": was["selected"],
        "run_id": was["run_id"],
    }


class NextManifest(BaseModel, frozen=True):
    """The datapool's manifest once this run commits: this run's segment, written once.

    run.json and the report (written before the commit) take its counts, and the commit
    uploads the segment.
    """

    path: str  # the run's segment
    index: str | None  # its nearest-neighbour index, where it is large enough to have one
    base: bool  # it holds the whole pool: the next version's only segment
    samples: int
    selected: int


def write_next_manifest(
    run_plan: RunPlan,
    processed: SampleTable,
    embeddings: EmbeddingTable,
    selected: list[str],
    run_id: str,
    path: Path,
) -> NextManifest:
    """Write this run's segment to `path`, with the pool's counts of samples and selected after it."""
    ids, vectors = read_embeddings(embeddings)
    segment = run_segment(
        run_plan, pq.read_table(processed.path), dict(zip(ids, vectors, strict=True)), set(selected), run_id
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(segment, path)
    fresh = segment.filter(segment["id"].is_valid())
    kept_selected = 0 if starts_over(run_plan) else read_live(run_plan.kept_segments, ["id"], True).num_rows
    index = path.with_suffix(".faiss")
    return NextManifest(
        path=str(path),
        index=str(index) if build_segment_index(str(path), index) else None,
        base=starts_over(run_plan),
        samples=run_plan.kept + fresh.num_rows,
        selected=kept_selected + int(pc.sum(fresh["selected"]).as_py() or 0),
    )


def commit_version(
    name: str,
    storage: Storage,
    base: Datapool,
    state: Datapool,
    segment: Path,
    whole: bool,
    index: Path | None = None,
) -> Datapool:
    """Commit `state` with this run's `segment` as the version after `base`, the state the run started from.

    The segment and its `index` are uploaded first (multipart when large), then the
    version's log entry is created. A `whole` segment is the version's only one; else it
    follows base's. Where a compaction of `base` took that version first, the segment follows
    the compacted one, one version later: compaction changes no row, so it never fails a run.

    Raises:
        DatapoolConflictError: another run committed first; nothing of this run's state was
            committed (its segment file stays, unreferenced, until retention removes it).
    """
    key = f"datapool/{name}/manifests/{base.version + 1:08d}-{state.last_run_id}.parquet"
    if index is not None:
        storage.upload_file(index_key(key), index)
    uri = storage.upload_file(key, segment)
    while True:
        segments = [uri] if whole else [*pool_segments(base), uri]
        update = {"version": base.version + 1, "segments": segments, "manifest": None, "output": storage.uri}
        committed = state.model_copy(update=update)
        winner = create_version(name, storage, committed)
        if winner.segments == committed.segments:  # ours (a retried commit finds its own entry)
            break
        if winner.compacted_from != base.version:
            raise DatapoolConflictError(
                f"datapool {name!r} moved to version {winner.version} "
                f"(committed by run {winner.last_run_id}) "
                f"while run {state.last_run_id} was working from version {base.version}: this run's state "
                "was not committed, its files stay under runs/; run again to process what is still new"
            )
        base = winner
    committed.save(name, overwrite=True)
    logger.info(
        "datapool %r: committed version %d (%d samples, %d segments)",
        name,
        committed.version,
        committed.samples,
        len(segments),
    )
    return committed


def create_version(name: str, storage: Storage, state: Datapool) -> Datapool:
    """Create `state`'s log entry if its version has none; the entry that holds the version now.

    That is `state` itself when this call created it.
    """
    if storage.write_new(version_key(name, state.version), state.model_dump_json(indent=2).encode()):
        return state
    return Datapool.model_validate_json(storage.read_bytes(version_key(name, state.version)))


class PoolStart(BaseModel, frozen=True):
    """What a run starts from: the datapool's state, local copies of its segments, and its model.

    The state is the datapool's committed one; the model is there when the run embeds with it.
    """

    name: str
    source: str
    state: Datapool
    segments: list[str]  # local copies of the state's manifest segments, oldest first
    indexes: list[str | None] = []  # local copies of their indexes (None: a segment has none)
    model: OnnxModel | None


def check_source(name: str, state: Datapool, source: str, process_all: bool) -> None:
    """Refuse a run over another source than the one the datapool holds.

    A datapool remembers one source's samples and picks: a run over another source would
    treat them as gone (and re-select them when that source comes back).

    Raises:
        ValueError: the pool holds another source, and the run does not start it over.
    """
    if state.source is None or state.source == source or process_all:
        return
    raise ValueError(
        f"datapool {name!r} holds the samples and picks of source {state.source}, not {source}: "
        "curating another source into it would forget them. Give this source its own datapool "
        f"(--datapool NAME, or another --output), or pass --process-all to start {name!r} over "
        f"with {source}"
    )


def start_from(
    name: str, source: str, storage: Storage, process_all: bool, reuse_model: bool, directory: Path
) -> PoolStart:
    """What a run starts from: the checked state and, unless process_all, its segments and reused model."""
    state = read_state(name, storage)
    check_source(name, state, source, process_all)
    repair_last_run(name, state, storage)
    segments = [] if process_all else fetch_segments(state, storage, directory)
    indexes = [] if process_all else fetch_indexes(state, storage, directory)
    model = None
    if reuse_model and state.model_onnx is not None and not process_all:
        path = fetch_model(state, storage, directory / "models")
        model = OnnxModel(
            path=str(path),
            sha256=state.model_onnx_sha256 or "",  # fetch_model checked the file against it
            embedding_dim=state.embedding_dim or 0,
            input_size=state.input_size or 0,
            parity_max_abs_diff=None,
            precision=onnx_metadata(path).get("precision", "fp32"),
        )
    logger.info(
        "datapool %r at version %d: %d samples, %d selected",
        name,
        state.version,
        state.samples,
        state.selected,
    )
    return PoolStart(name=name, source=source, state=state, segments=segments, indexes=indexes, model=model)


def run_json_key(run_id: str) -> str:
    """The key of a run's run.json in the output."""
    return f"runs/{run_id}/run.json"


def write_latest(storage: Storage, run_id: str, run_json: str, finished_at: str | None = None) -> None:
    """Point latest.json at run `run_id` and its run.json."""
    latest = {
        "run_id": run_id,
        "run": f"runs/{run_id}",
        "run_json": run_json,
        "finished_at": finished_at or utc_now(),
    }
    storage.write_bytes("latest.json", json.dumps(latest, indent=2).encode())


def repair_last_run(name: str, state: Datapool, storage: Storage) -> None:
    """Make latest.json and the last committed run's run.json say that it was committed.

    A run killed after its version reached the log, but before it pointed latest.json at
    itself or marked its run.json committed, leaves both behind: its picks are in the pool,
    and this is where they are found again.
    """
    if state.last_run_id is None:
        return
    run_id = state.last_run_id
    try:
        latest = json.loads(storage.read_bytes("latest.json"))
    except MissingObjectError:
        latest = {}
    if latest.get("run_id") != run_id:
        logger.warning(
            "datapool %r: latest.json did not name its last committed run %s: repaired", name, run_id
        )
        write_latest(storage, run_id, f"{storage.uri}/{run_json_key(run_id)}", state.last_run_at)
    try:
        record = RunRecord.model_validate_json(storage.read_bytes(run_json_key(run_id)))
    except (MissingObjectError, ValidationError):
        return  # its folder was removed, or an older winnow wrote it (status "completed")
    except StorageError as error:  # the repair is a courtesy: it never stops a run
        logger.warning("datapool %r: cannot read run %s's run.json to repair it: %s", name, run_id, error)
        return
    if record.status == "published":
        logger.warning(
            "datapool %r: run %s was committed but its run.json says %r: repaired",
            name,
            run_id,
            record.status,
        )
        datapool = record.datapool.model_copy(
            update={"version": state.version, "samples": state.samples, "selected": state.selected}
        )
        committed = record.model_copy(update={"status": "committed", "datapool": datapool})
        storage.write_bytes(run_json_key(run_id), committed.to_json().encode())


def commit_run(
    start: PoolStart,
    storage: Storage,
    manifest: NextManifest,
    model: ModelPointers,
    run_id: str,
    run_json: str,
) -> Datapool:
    """Commit the run's datapool version, then point latest.json at the run."""
    state = Datapool(
        output=storage.uri,
        source=start.source,
        model_onnx=model.onnx,
        model_onnx_sha256=model.onnx_sha256,
        checkpoint=model.checkpoint,
        input_size=model.input_size,
        embedding_dim=model.embedding_dim,
        samples=manifest.samples,
        selected=manifest.selected,
        last_run_id=run_id,
        last_run_at=utc_now(),
    )
    index = None if manifest.index is None else Path(manifest.index)
    committed = commit_version(
        start.name, storage, start.state, state, Path(manifest.path), manifest.base, index
    )
    write_latest(storage, run_id, run_json)
    return committed
