"""The datapool's state: planning a run against a manifest, committing last and exactly
once, and samples that vanish between listing and reading."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.config import ChecksConfig, VideoConfig
from tasks.datapool.block import Datapool
from tasks.datapool.state import DatapoolConflictError, commit_version, read_state, start_from, version_key
from tasks.ingest.listing import discover_source
from tasks.ingest.planning import plan_run
from tasks.media.inspection import inspect_shard_into
from tasks.publish.files import write_run_json
from tasks.records.manifest import MANIFEST_SCHEMA
from tasks.records.run import RunRecord
from tasks.records.samples import STATUS_MISSING
from tasks.records.shards import listing_table, read_listing, write_manifests
from tasks.storage.interface import ObjectInfo
from tasks.storage.local import LocalStorage
from tasks.storage.shard_store import ShardStore
from tests.images import write_scene_crops
from tests.run_records import synthetic_record


def manifest(rows: list[tuple[str, str, bool]]) -> pa.Table:
    """A manifest of ok samples: (id, version, selected); a frame's key is its video's."""
    return pa.table(
        {
            "id": [r[0] for r in rows],
            "key": [r[0].split("#frame=")[0] for r in rows],
            "version": [r[1] for r in rows],
            "size": [1] * len(rows),
            "status": ["ok"] * len(rows),
            "reason": [None] * len(rows),
            "content_hash": [f"hash-{r[0]}" for r in rows],
            "embedding": [[1.0, 0.0]] * len(rows),
            "selected": [r[2] for r in rows],
            "run_id": ["run-1"] * len(rows),
        },
        schema=MANIFEST_SCHEMA,
    )


def test_only_new_and_changed_keys_are_processed() -> None:
    previous = manifest(
        [("a.jpg", "v1", True), ("b.jpg", "v1", True), ("c.jpg", "v1", False), ("gone.jpg", "v1", True)]
    )
    listed = [
        ObjectInfo(key, 1, version)
        for key, version in [("a.jpg", "v1"), ("b.jpg", "v2"), ("c.jpg", "v1"), ("d.jpg", "v1")]
    ]
    plan = plan_run(listing_table(listed), previous, reprocess_all=False)
    kept = previous.filter(plan.keeps)
    assert [o.key for o in plan.to_process] == ["b.jpg", "d.jpg"]  # changed, new
    assert kept["id"].to_pylist() == ["a.jpg", "c.jpg"]  # unchanged; gone.jpg left the source
    assert plan.previously_selected == {"a.jpg"}  # b.jpg's selected content was replaced
    assert sorted(plan.dropped.to_pylist()) == ["b.jpg", "gone.jpg"]
    assert plan.vanished.to_pylist() == ["gone.jpg"]
    again = plan_run(listing_table(listed), previous, reprocess_all=True)
    assert len(again.to_process) == 4 and previous.filter(again.keeps).num_rows == 0
    assert again.previously_selected == {"a.jpg"}
    assert sorted(again.dropped.to_pylist()) == ["a.jpg", "b.jpg", "c.jpg", "gone.jpg"]
    assert again.vanished.to_pylist() == ["gone.jpg"]


def test_a_video_is_kept_resampled_or_dropped_with_all_its_frames() -> None:
    frames = [f"{video}#frame={i:06d}" for video in ("same.mp4", "changed.mp4", "gone.mp4") for i in (0, 5)]
    previous = manifest([(i, "v1", i.endswith("5")) for i in frames])
    listed = [ObjectInfo("same.mp4", 1, "v1"), ObjectInfo("changed.mp4", 1, "v2")]
    plan = plan_run(listing_table(listed), previous, reprocess_all=False)
    kept = previous.filter(plan.keeps)
    assert [o.key for o in plan.to_process] == ["changed.mp4"]
    assert kept["id"].to_pylist() == ["same.mp4#frame=000000", "same.mp4#frame=000005"]
    assert plan.previously_selected == {"same.mp4#frame=000005"}
    assert sorted(plan.dropped.to_pylist()) == ["changed.mp4", "gone.mp4"]
    assert plan.vanished.to_pylist() == ["gone.mp4"]


def new_state(run_id: str) -> Datapool:
    return Datapool(output="", last_run_id=run_id, samples=1)


def commit(name: str, storage: LocalStorage, state: Datapool, rows: pa.Table) -> Datapool:
    """Commit `rows` as the whole pool of the version after a new datapool's (version 0)."""
    segment = storage.root.parent / "segments" / f"{uuid.uuid4().hex}.parquet"
    segment.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, segment)
    return commit_version(name, storage, Datapool(output=""), state, segment, whole=True)


def test_of_two_racing_commits_exactly_one_lands(prefect_server: None, tmp_path: Path) -> None:
    storage, name = LocalStorage(tmp_path / "out"), f"race-{uuid.uuid4().hex[:8]}"
    rows = manifest([("a.jpg", "v1", True)])
    winner = commit(name, storage, new_state("run-a"), rows)
    assert winner.version == 1
    # run-b also started from version 0 and finishes second.
    with pytest.raises(DatapoolConflictError, match=r"moved to version 1 \(committed by run run-a\)"):
        commit(name, storage, new_state("run-b"), rows)
    block = Datapool.load(name)
    assert isinstance(block, Datapool)
    assert (block.version, block.last_run_id) == (1, "run-a")
    assert Datapool.model_validate_json(storage.read_bytes(version_key(name, 1))).last_run_id == "run-a"
    assert read_state(name, storage).last_run_id == "run-a"
    # A retried commit whose first attempt landed is not a conflict with itself.
    assert commit(name, storage, new_state("run-a"), rows).version == 1


def test_a_block_left_behind_by_a_crash_is_repaired_from_the_log(
    prefect_server: None, tmp_path: Path
) -> None:
    storage, name = LocalStorage(tmp_path / "out"), f"crash-{uuid.uuid4().hex[:8]}"
    commit(name, storage, new_state("run-a"), manifest([]))
    # Version 2 reached the log, then the run died before it saved the block.
    logged = Datapool(output=storage.uri, version=2, last_run_id="run-b", manifest=None)
    assert storage.write_new(version_key(name, 2), logged.model_dump_json().encode())
    assert read_state(name, storage).version == 2
    block = Datapool.load(name)
    assert isinstance(block, Datapool) and (block.version, block.last_run_id) == (2, "run-b")


def test_a_datapool_belongs_to_one_output(prefect_server: None, tmp_path: Path) -> None:
    name = f"owned-{uuid.uuid4().hex[:8]}"
    commit(name, LocalStorage(tmp_path / "one"), new_state("run-a"), manifest([]))
    with pytest.raises(ValueError, match=f"datapool '{name}' belongs to output .*one, not .*two"):
        read_state(name, LocalStorage(tmp_path / "two"))


def test_a_datapool_belongs_to_one_source(prefect_server: None, tmp_path: Path) -> None:
    storage, name, scratch = LocalStorage(tmp_path / "out"), f"source-{uuid.uuid4().hex[:8]}", tmp_path / "d"
    state = Datapool(output="", source="/data/cams", last_run_id="run-a", samples=1)
    commit(name, storage, state, manifest([("a.jpg", "v1", True)]))
    assert start_from(name, "/data/cams", storage, False, False, scratch).state.version == 1
    with pytest.raises(
        ValueError, match=r"holds the samples and picks of source /data/cams, not /data/other"
    ):
        start_from(name, "/data/other", storage, False, False, scratch)
    # Starting over is a deliberate choice, and the next commit records the new source.
    assert start_from(name, "/data/other", storage, True, False, scratch).source == "/data/other"
    # A pool committed before sources were recorded is adopted by the first run that comes.
    older = f"older-{uuid.uuid4().hex[:8]}"
    commit(older, storage, new_state("run-a"), manifest([]))
    assert start_from(older, "/data/any", storage, False, False, scratch).state.version == 1


def test_a_file_deleted_after_listing_is_recorded_missing(tmp_path: Path) -> None:
    source = tmp_path / "photos"
    keys = write_scene_crops(source, per_scene=2)
    listing = discover_source(str(source), None, None, (), tmp_path / "listings")
    (source / keys[0]).unlink()
    (source / keys[1]).write_bytes(b"changed after listing")
    store = ShardStore(root=str(tmp_path / "shards"))
    [shard] = write_manifests(read_listing(listing), 100, store)
    inspection = inspect_shard_into(
        shard, LocalStorage(source), 32, ChecksConfig(), VideoConfig(), store, "inspect/0"
    )
    rows = {r["id"]: r for r in pq.read_table(inspection.samples_file(tmp_path)).to_pylist()}
    assert rows[keys[0]]["status"] == rows[keys[1]]["status"] == STATUS_MISSING
    assert "does not exist" in rows[keys[0]]["reason"]
    assert "changed after listing" in rows[keys[1]]["reason"]
    assert inspection.ok == len(keys) - 2


def test_a_run_killed_after_its_commit_is_named_by_latest_json_and_marked_committed(
    prefect_server: None, tmp_path: Path
) -> None:
    """The commit landed (versions/1.json and the block), then the run died before it pointed
    latest.json at itself and rewrote its run.json: the next run's start repairs both."""
    storage, name = LocalStorage(tmp_path / "out"), f"killed-{uuid.uuid4().hex[:8]}"
    published = synthetic_record("run-a", {}, embedded=1, selected=1, status="published")
    write_run_json(storage, published)
    storage.write_bytes("latest.json", b'{"run_id": "run-before"}')
    commit(name, storage, new_state("run-a"), manifest([("a.jpg", "v1", True)]))

    start_from(name, "/data/cams", storage, False, False, tmp_path / "d")

    latest = json.loads(storage.read_bytes("latest.json"))
    assert (latest["run_id"], latest["run_json"]) == ("run-a", f"{storage.uri}/runs/run-a/run.json")
    repaired = RunRecord.model_validate_json(storage.read_bytes("runs/run-a/run.json"))
    assert repaired.status == "committed"
    assert (repaired.datapool.version, repaired.datapool.selected) == (1, 0)
    assert repaired.counts == published.counts  # nothing else changed


def test_the_loser_of_a_race_says_so_in_its_run_json_and_is_never_named_latest(
    prefect_server: None, tmp_path: Path
) -> None:
    storage, name = LocalStorage(tmp_path / "out"), f"lost-{uuid.uuid4().hex[:8]}"
    commit(name, storage, new_state("run-a"), manifest([]))
    write_run_json(storage, synthetic_record("run-a", {}, embedded=1, selected=1))
    storage.write_bytes("latest.json", b'{"run_id": "run-a"}')
    loser = synthetic_record("run-b", {}, embedded=1, selected=1, status="published")
    write_run_json(storage, loser)
    with pytest.raises(DatapoolConflictError) as lost:
        commit(name, storage, new_state("run-b"), manifest([]))
    write_run_json(storage, loser.model_copy(update={"status": "conflict", "error": str(lost.value)}))

    start_from(name, "/data/cams", storage, False, False, tmp_path / "d")
    assert json.loads(storage.read_bytes("latest.json"))["run_id"] == "run-a"
    on_disk = RunRecord.model_validate_json(storage.read_bytes("runs/run-b/run.json"))
    assert on_disk.status == "conflict" and "committed by run run-a" in (on_disk.error or "")
