"""The datapool's segmented manifest: runs that add, change, lose and fail to read keys give the
same pool as rewriting the whole manifest each run, with or without compaction; compaction
never fails a run, a killed compaction loses nothing, and retention keeps what versions need."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect.settings import PREFECT_API_URL

from tasks.datapool.block import Datapool
from tasks.datapool.compaction import compact, prune
from tasks.datapool.state import (
    commit_version,
    fetch_indexes,
    pool_segments,
    read_state,
    run_segment,
    starts_over,
)
from tasks.ingest.planning import plan_shards
from tasks.records.keys import frame_id
from tasks.records.manifest import MANIFEST_SCHEMA
from tasks.records.segments import read_live, write_folded
from tasks.records.shards import read_shard_manifest, write_listing
from tasks.storage.interface import ObjectInfo
from tasks.storage.local import LocalStorage
from tasks.storage.shard_store import ShardStore
from tests.manifests import image_rows

DIM = 4
Row = dict[str, Any]


def sample_ids(info: ObjectInfo) -> list[str]:
    """A video's frames (as many as its version's number, so a changed video changes them), or the image."""
    if info.key.endswith(".mp4"):
        return [frame_id(info.key, index) for index in range(int(info.version[1:]) % 3 + 1)]
    return [info.key]


def next_listing(rng: random.Random, pool: dict[str, str], run: int) -> list[ObjectInfo]:
    """What the source lists at `run`: most keys unchanged, some changed or gone, some new."""
    listed = []
    for key, version in sorted(pool.items()):
        fate = rng.random()
        if fate < 0.15:
            continue  # deleted
        listed.append(ObjectInfo(key, 1, f"v{run}" if fate < 0.35 else version))
    listed += [ObjectInfo(f"r{run}-{i}.{rng.choice(['jpg', 'mp4'])}", 1, f"v{run}") for i in range(6)]
    return listed


def processed_rows(objects: list[ObjectInfo], rng: random.Random) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The samples table a run writes for `objects` (a tenth unreadable), and the read ones' embeddings."""
    rows, embeddings = [], {}
    for info in objects:
        unreadable = rng.random() < 0.1
        for sample in sample_ids(info):
            status = "missing" if unreadable else "ok"
            rows.append(
                {"id": sample, "key": info.key, "status": status, "reason": None, "content_hash": sample}
            )
            if not unreadable:
                embeddings[sample] = np.full(DIM, rng.random(), dtype=np.float32)
    columns = ["id", "key", "status", "reason", "content_hash"]
    table = pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in columns})
    return table.append_column("duplicate_of", pa.nulls(table.num_rows, pa.string())), embeddings


def comparable(table: pa.Table) -> list[tuple[Any, ...]]:
    """A pool's rows as sorted tuples of what a run relies on."""
    rows = table.select(["id", "key", "version", "status", "selected", "run_id", "embedding"]).to_pylist()
    return sorted(tuple(r.values()) for r in rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segments_give_the_pool_a_whole_rewrite_gives_with_or_without_compaction(
    seed: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    segments: list[str] = []
    compacted: list[str] = []  # the same runs, with the segments merged after every other run
    whole = MANIFEST_SCHEMA.empty_table()  # today's way: every run writes the whole pool
    versions: dict[str, str] = {}
    for run in range(1, 9):
        listed = next_listing(rng, versions, run)
        listing = write_listing("src", listed, tmp_path / "listings")
        store = ShardStore(root=str(tmp_path / "shards"))
        plan = plan_shards(listing, segments, [], False, 4, store, tmp_path / f"plan-{run}")
        objects = [info for shard in plan.shards for info in read_shard_manifest(shard, store)]
        unchanged = {i.key for i in listed if versions.get(i.key) == i.version}
        assert sorted(o.key for o in objects) == sorted(i.key for i in listed if i.key not in unchanged)
        processed, embeddings = processed_rows(objects, rng)
        picks = {i for i in embeddings if rng.random() < 0.3}
        segment = run_segment(plan, processed, embeddings, picks, f"run-{run}")
        path = tmp_path / f"segment-{run}.parquet"
        pq.write_table(segment, path)
        segments = [str(path)] if starts_over(plan) else [*segments, str(path)]
        compacted = [str(path)] if starts_over(plan) else [*compacted, str(path)]

        # The reference: the kept rows of the whole manifest, plus this run's rows that were read.
        kept = whole.filter(pa.array([k in unchanged for k in whole["key"].to_pylist()], pa.bool_()))
        fresh = segment.filter(segment["id"].is_valid())
        whole = pa.concat_tables([kept, fresh])
        versions = {r["key"]: r["version"] for r in whole.select(["key", "version"]).to_pylist()}
        assert comparable(read_live(segments, MANIFEST_SCHEMA.names)) == comparable(whole)
        if run % 2 == 0:
            merged = tmp_path / f"compacted-{run}.parquet"
            assert write_folded(compacted, merged) == whole.num_rows
            compacted = [str(merged)]
        assert comparable(read_live(compacted, MANIFEST_SCHEMA.names)) == comparable(whole)
    assert len(segments) > 2 and whole.num_rows > 20  # the runs did keep, change and drop rows
    selected = read_live(segments, ["id"], selected_only=True)["id"].to_pylist()
    assert sorted(selected) == sorted(r["id"] for r in whole.to_pylist() if r["selected"])


def rows(keys: list[str], run_id: str) -> pa.Table:
    """Clean, selected rows of images `keys`."""
    return image_rows(keys, np.tile([1.0, 0.0], (len(keys), 1)), True, run_id)


def commit_rows(
    name: str, storage: LocalStorage, base: Datapool, table: pa.Table, run_id: str, samples: int
) -> Datapool:
    """Commit `table` as run `run_id`'s segment on top of `base`."""
    path = storage.root.parent / "work" / f"{run_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    state = Datapool(output=storage.uri, last_run_id=run_id, samples=samples)
    return commit_version(name, storage, base, state, path, whole=base.version == 0)


def pool_of(state: Datapool, storage: LocalStorage) -> list[str]:
    """The ids a committed state's segments hold."""
    return sorted(read_live(pool_segments(state), ["id"])["id"].to_pylist())


def test_a_run_that_started_before_a_compaction_commits_on_top_of_it(
    prefect_server: None, tmp_path: Path
) -> None:
    storage, name = LocalStorage(tmp_path / "out"), f"rebase-{uuid.uuid4().hex[:8]}"
    first = commit_rows(name, storage, Datapool(output=""), rows(["a", "b"], "run-1"), "run-1", 2)
    second = commit_rows(name, storage, first, rows(["c"], "run-2"), "run-2", 3)
    # run-3 starts from version 2; meanwhile run-2's end merges the two segments (version 3).
    merged = compact(name, storage, second, tmp_path / "cache")
    assert (merged.version, merged.compacted_from, len(merged.segments)) == (3, 2, 1)
    assert pool_of(merged, storage) == ["a", "b", "c"]
    third = commit_rows(name, storage, second, rows(["d"], "run-3"), "run-3", 4)
    assert (third.version, third.segments[0]) == (4, merged.segments[0])
    assert pool_of(read_state(name, storage), storage) == ["a", "b", "c", "d"]
    # A run whose version was taken by another run still fails: it never commits over new rows.
    with pytest.raises(Exception, match="moved to version 4"):
        commit_rows(name, storage, merged, rows(["e"], "run-4"), "run-4", 4)


def test_retention_deletes_only_segments_no_kept_version_needs(prefect_server: None, tmp_path: Path) -> None:
    storage, name = LocalStorage(tmp_path / "out"), f"keep-{uuid.uuid4().hex[:8]}"
    state = commit_rows(name, storage, Datapool(output=""), rows(["a"], "run-1"), "run-1", 1)
    state = commit_rows(name, storage, state, rows(["b"], "run-2"), "run-2", 2)
    state = compact(name, storage, state, tmp_path / "cache")  # version 3
    # A run still working has uploaded its segment for version 4, and someone left a file of their own.
    folder = tmp_path / "out" / "datapool" / name / "manifests"
    (folder / "00000004-run-in-flight.parquet").write_bytes(b"")
    (folder / "notes.txt").write_text("mine")
    # Indexes go with their segments (these two stand in for large segments' own).
    indexes = folder.parent / "indexes"
    indexes.mkdir()
    for segment in ("00000001-run-1", Path(state.segments[0]).stem):
        (indexes / f"{segment}.faiss").write_bytes(b"")
    assert prune(name, storage, keep_versions=2) == []  # versions 2 and 3 need all three segments
    deleted = prune(name, storage, keep_versions=1)
    assert sorted(Path(k).name for k in deleted) == [
        "00000001-run-1.faiss",
        "00000001-run-1.parquet",
        "00000002-run-2.parquet",
    ]
    assert [p.name for p in indexes.iterdir()] == [f"{Path(state.segments[0]).stem}.faiss"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["00000004-run-in-flight.parquet", "notes.txt", Path(state.segments[0]).name]
    )
    assert pool_of(read_state(name, storage), storage) == ["a", "b"]
    # Every version's log entry stays: a stale run can never create an old version again.
    assert len(list((tmp_path / "out" / "datapool" / name / "versions").iterdir())) == 3


# The state comes as JSON and the test's Prefect server is named: a process that looked for
# a server would start one of its own, which the SIGKILL would leave behind.
COMPACT_SCRIPT = """
import sys
from pathlib import Path
from tasks.datapool.block import Datapool
from tasks.datapool.compaction import compact
from tasks.storage.local import LocalStorage

state = Datapool.model_validate_json(Path(sys.argv[3]).read_text())
compact(sys.argv[2], LocalStorage(Path(sys.argv[1])), state, Path(sys.argv[4]))
"""


def test_a_compaction_killed_midway_loses_nothing(prefect_server: None, tmp_path: Path) -> None:
    storage, name = LocalStorage(tmp_path / "out"), f"killed-{uuid.uuid4().hex[:8]}"
    keys = [f"img-{i:07d}.jpg" for i in range(300_000)]
    first = commit_rows(name, storage, Datapool(output=""), rows(keys, "run-1"), "run-1", len(keys))
    state = commit_rows(name, storage, first, rows(["z.jpg"], "run-2"), "run-2", len(keys) + 1)
    before = pool_of(state, storage)
    cache = tmp_path / "cache"
    state_file = tmp_path / "state.json"
    state_file.write_text(state.model_dump_json())
    worker = subprocess.Popen(
        [sys.executable, "-c", COMPACT_SCRIPT, str(storage.root), name, str(state_file), str(cache)],
        env=os.environ
        | {
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        },
    )
    deadline = time.monotonic() + 120
    while not list(cache.glob("compacted-*")) and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL, "the compaction ended before it could be killed"
    after = read_state(name, storage)
    assert (after.version, after.segments) == (2, state.segments)
    assert pool_of(after, storage) == before
    # The next compaction runs as if the killed one never had.
    merged = compact(name, storage, after, cache)
    assert merged.version == 3 and pool_of(merged, storage) == before


def test_a_segment_s_index_is_committed_beside_it_and_fetched_with_it(
    prefect_server: None, tmp_path: Path
) -> None:
    storage, name = LocalStorage(tmp_path / "out"), f"index-{uuid.uuid4().hex[:8]}"
    first = commit_rows(name, storage, Datapool(output=""), rows(["a"], "run-1"), "run-1", 1)
    segment, index = tmp_path / "run-2.parquet", tmp_path / "run-2.faiss"
    pq.write_table(rows(["b"], "run-2"), segment)
    index.write_bytes(b"an index")
    state = Datapool(output=storage.uri, last_run_id="run-2", samples=2)
    second = commit_version(name, storage, first, state, segment, whole=False, index=index)
    fetched = fetch_indexes(second, storage, tmp_path / "cache")
    assert fetched[0] is None  # run-1's segment was too small for one
    assert fetched[1] is not None and Path(fetched[1]).read_bytes() == b"an index"
