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

import io
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
from tasks.records.shards import read_listing
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


def fetch_manifest(state: Datapool, storage: Storage, directory: Path) -> str | None:
    """A local copy of the state's manifest (None for a new datapool)."""
    if state.manifest is None:
        return None
    path = directory / f"manifest-{state.version:08d}-{digest(state.manifest)[:8]}.parquet"
    return str(download_once(storage, relative_key(storage, state.manifest), path))


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


def manifest_after_run(
    run_plan: RunPlan,
    processed: pa.Table,
    embeddings: dict[str, np.ndarray],
    selected: set[str],
    run_id: str,
) -> pa.Table:
    """The manifest after this run: kept rows, plus a row for each processed sample that was read.

    A missing or unreadable one is left out, so the next run tries it again. A moved one
    takes the row of the datapool sample it was, under its new id and key: its embedding,
    its selected flag and the run that processed it.

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
    kept = pq.read_table(run_plan.kept_manifest).cast(MANIFEST_SCHEMA)
    return pa.concat_tables([kept, fresh]).sort_by("id")


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
    """The datapool's manifest once this run commits, built once.

    run.json and the report (written before the commit) take its counts, and the commit
    writes the file itself.
    """

    path: str
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
    """Write the manifest after this run to `path`, with its counts of samples and selected."""
    ids, vectors = read_embeddings(embeddings)
    manifest = manifest_after_run(
        run_plan, pq.read_table(processed.path), dict(zip(ids, vectors, strict=True)), set(selected), run_id
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(manifest, path)
    return NextManifest(
        path=str(path),
        samples=manifest.num_rows,
        selected=int(pc.sum(manifest["selected"]).as_py() or 0),
    )


def commit_version(
    name: str, storage: Storage, base_version: int, state: Datapool, manifest: pa.Table
) -> Datapool:
    """Commit `state` (with `manifest`) as version base_version + 1.

    Raises:
        DatapoolConflictError: another run committed that version first; nothing of this
            run's state was committed (its manifest file stays, unreferenced).
    """
    version = base_version + 1
    buffer = io.BytesIO()
    pq.write_table(manifest, buffer)
    manifest_uri = storage.write_bytes(
        f"datapool/{name}/manifests/{version:08d}-{state.last_run_id}.parquet", buffer.getvalue()
    )
    committed = state.model_copy(update={"version": version, "manifest": manifest_uri, "output": storage.uri})
    created = storage.write_new(version_key(name, version), committed.model_dump_json(indent=2).encode())
    winner = (
        committed if created else Datapool.model_validate_json(storage.read_bytes(version_key(name, version)))
    )
    # A retried commit whose first attempt created the entry finds its own run there.
    if winner.last_run_id != state.last_run_id:
        raise DatapoolConflictError(
            f"datapool {name!r} moved to version {version} (committed by run {winner.last_run_id}) while "
            f"run {state.last_run_id} was working from version {base_version}: this run's state was not "
            "committed, its files stay under runs/; run again to process what is still new"
        )
    committed.save(name, overwrite=True)
    logger.info("datapool %r: committed version %d (%d samples)", name, version, manifest.num_rows)
    return committed


class PoolStart(BaseModel, frozen=True):
    """What a run starts from: the datapool's state, a local copy of its manifest, and its model.

    The state is the datapool's committed one; the model is there when the run embeds with it.
    """

    name: str
    source: str
    state: Datapool
    manifest: str | None
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
    """What a run starts from: the checked state and, unless process_all, its manifest and reused model."""
    state = read_state(name, storage)
    check_source(name, state, source, process_all)
    repair_last_run(name, state, storage)
    manifest = None if process_all else fetch_manifest(state, storage, directory)
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
    return PoolStart(name=name, source=source, state=state, manifest=manifest, model=model)


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
    committed = commit_version(start.name, storage, start.state.version, state, pq.read_table(manifest.path))
    write_latest(storage, run_id, run_json)
    return committed
