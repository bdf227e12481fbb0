"""Compaction and retention: merge a datapool's segments into one, and delete what no version needs.

Both run after a run's commit and are safe to kill at any point:
- compaction folds the segments into one base file, uploads it with its index
  (tasks/selection/pool_index.py), and commits it as a version
  of its own with create-if-absent, like a run. Killed before that entry exists, the pool is
  as it was, and the new file is an orphan that retention removes later;
- retention deletes only segment files that none of the newest `keep_versions` versions
  names and that are older than all of them, so a file a run is about to commit (named
  after a newer version) is never touched. Log entries are never deleted: they are small,
  and a deleted one would let a stale run create its version again.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path, PurePosixPath

from tasks.datapool.block import Datapool
from tasks.datapool.state import create_version, fetch_segments, pool_segments, relative_key, versions_prefix
from tasks.records.segments import write_folded
from tasks.selection.pool_index import INDEX_FOLDER, build_segment_index, index_key
from tasks.storage.interface import Storage

logger = logging.getLogger(__name__)


def manifests_prefix(name: str) -> str:
    """The prefix of datapool `name`'s segment files."""
    return f"datapool/{name}/manifests"


def indexes_prefix(name: str) -> str:
    """The prefix of datapool `name`'s segment indexes (tasks/selection/pool_index.py)."""
    return f"datapool/{name}/{INDEX_FOLDER}"


def compact(name: str, storage: Storage, state: Datapool, directory: Path) -> Datapool:
    """Merge `state`'s segments into one, committed as the next version; the state the pool is in after.

    Raises:
        RuntimeError: the merged file does not hold the state's count of samples (nothing is committed).
    """
    merged = directory / f"compacted-{state.version:08d}-{uuid.uuid4().hex}.parquet"
    rows = write_folded(fetch_segments(state, storage, directory), merged)
    if rows != state.samples:
        merged.unlink()
        raise RuntimeError(
            f"datapool {name!r}: merging version {state.version}'s segments gave {rows} rows, not the "
            f"{state.samples} samples it holds; the segments were left as they are"
        )
    key = f"{manifests_prefix(name)}/{state.version + 1:08d}-{merged.name}"
    index = merged.with_suffix(".faiss")
    if build_segment_index(str(merged), index):
        storage.upload_file(index_key(key), index)
        index.unlink()
    uri = storage.upload_file(key, merged)
    merged.unlink()
    update = {
        "version": state.version + 1,
        "segments": [uri],
        "manifest": None,
        "compacted_from": state.version,
    }
    compacted = state.model_copy(update=update)
    winner = create_version(name, storage, compacted)
    if winner.segments != compacted.segments:
        logger.info(
            "datapool %r: run %s committed version %d first; its segments were not merged this time",
            name,
            winner.last_run_id,
            winner.version,
        )
        return winner
    compacted.save(name, overwrite=True)
    logger.info(
        "datapool %r: merged version %d's %d segments into version %d",
        name,
        state.version,
        len(pool_segments(state)),
        compacted.version,
    )
    return compacted


def version_of_file(key: str) -> int | None:
    """The version a segment file was written for, from its name (None for a name winnow did not give)."""
    prefix = PurePosixPath(key).name[:8]
    return int(prefix) if prefix.isdigit() else None


def is_older(key: str, version: int) -> bool:
    """Whether segment file `key` was written for a version before `version`.

    Never, for a name winnow did not give.
    """
    written_for = version_of_file(key)
    return written_for is not None and written_for < version


def prune(name: str, storage: Storage, keep_versions: int) -> list[str]:
    """Delete the segments and indexes that the newest `keep_versions` versions do not need; their keys."""
    entries = sorted(info.key for info in storage.list_objects(versions_prefix(name)))[-keep_versions:]
    if not entries:
        return []
    retained = [Datapool.model_validate_json(storage.read_bytes(key)) for key in entries]
    segments = {relative_key(storage, uri) for state in retained for uri in pool_segments(state)}
    needed = segments | {index_key(key) for key in segments}
    oldest = min(state.version for state in retained)
    removable = [
        info.key
        for prefix in (manifests_prefix(name), indexes_prefix(name))
        for info in storage.list_objects(prefix)
        if info.key not in needed and is_older(info.key, oldest)
    ]
    for key in removable:
        storage.delete(key)
    if removable:
        logger.info(
            "datapool %r: deleted %d segment files no version since %d needs", name, len(removable), oldest
        )
    return removable


def maintain(
    name: str, storage: Storage, state: Datapool, compact_after: int, keep_versions: int, directory: Path
) -> Datapool:
    """Merge the state's segments once there are more than `compact_after`, then apply retention."""
    if len(pool_segments(state)) > compact_after:
        state = compact(name, storage, state, directory)
    prune(name, storage, keep_versions)
    return state
