"""Incremental runs through a datapool, against a real S3 server (moto, over HTTP) and on
a local disk: only new or changed images are processed, new picks are diverse against
earlier ones, process_all starts over, and a failed run loses nothing."""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from examples.make_images import write_scene_crops
from flows.curate import curate
from tasks.datapool.block import Datapool
from tasks.ingest.listing import discover_source
from tasks.records.manifest import MANIFEST_SCHEMA
from tasks.records.run import RunRecord, outcome
from tasks.records.segments import read_live
from tasks.records.shards import read_listing
from tasks.storage.interface import StorageError
from tests.images import jpeg_bytes
from tests.s3 import new_bucket, s3_admin_client, upload_folder

TINY_TRAINING = {"backbone": "resnet10", "width": 8, "input_size": 32, "embedding_dim": 16, "epochs": 2}
FIRST_SCENES = ("astronaut", "coffee", "chelsea", "rocket")
NEW_SCENES = ("immunohistochemistry", "camera")
ODD_KEYS = ("sp ace/ünïcødé.jpg", "odd/../dots.jpg")


class Bucket:
    """The test's bucket: what the first run saw and what changed before the second."""

    def __init__(self, endpoint: str, root: Path) -> None:
        self.endpoint, self.name, self.root = endpoint, new_bucket(endpoint), root
        self.client = s3_admin_client(endpoint)
        self.source, self.output = f"s3://{self.name}/raw", f"s3://{self.name}/curated"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=f"raw/{key}", Body=data)

    def get(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def run_json(self, record: dict[str, Any]) -> dict[str, Any]:
        return dict(json.loads(self.get(record["artifacts"]["run.json"])))

    def selected(self, record: dict[str, Any]) -> list[str]:
        return self.get(record["artifacts"]["selected_filenames.txt"]).decode().splitlines()

    def rows(self, pool: Datapool) -> dict[str, dict[str, Any]]:
        return manifest_of(pool, self.get, self.root)


def manifest_of(pool: Datapool, read: Any, scratch: Path) -> dict[str, dict[str, Any]]:
    """The pool's rows by id: its segments, as `read` (URI -> bytes) gives them, folded."""
    assert pool.segments and pool.manifest is None
    copies = []
    for uri in pool.segments:
        copies.append(scratch / f"segment-{uuid.uuid4().hex}.parquet")
        copies[-1].write_bytes(read(uri))
    return {row["id"]: row for row in read_live([str(c) for c in copies], MANIFEST_SCHEMA.names).to_pylist()}


def selected_in(output: Path, record: dict[str, Any]) -> list[str]:
    return (output / "runs" / record["run_id"] / "selected_filenames.txt").read_text().splitlines()


def run(bucket: Bucket, credentials: str, **options: Any) -> dict[str, Any]:
    return curate(
        source=bucket.source,
        output=bucket.output,
        aws_credentials=credentials,
        datapool=f"pool-{bucket.name}",
        **({"training": TINY_TRAINING} | options),
    )


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Bucket:
    root = tmp_path_factory.mktemp("bucket")
    write_scene_crops(root / "first", FIRST_SCENES, per_scene=4, side=64)
    made = Bucket(s3_endpoint, root)
    upload_folder(s3_endpoint, root / "first", made.name, "raw")
    photo = Image.open(root / "first" / "coffee" / "00.jpg")
    for key in ODD_KEYS:  # legal S3 keys that are not safe file paths
        made.put(key, jpeg_bytes(photo.rotate(90 * (1 + ODD_KEYS.index(key)))))
    return made


@pytest.fixture(scope="module")
def first(bucket: Bucket, aws_credentials: str) -> dict[str, Any]:
    return run(bucket, aws_credentials, n_samples=4)


@pytest.fixture(scope="module")
def second(bucket: Bucket, aws_credentials: str, first: dict[str, Any]) -> dict[str, Any]:
    """Six crops of two new scenes, a re-encoded copy of each earlier pick (near
    duplicates), and one changed image, then the same command again."""
    write_scene_crops(bucket.root / "new", NEW_SCENES, per_scene=3, side=64)
    upload_folder(bucket.endpoint, bucket.root / "new", bucket.name, "raw")
    for pick in bucket.selected(first):
        copy = Image.open(io.BytesIO(bucket.get(f"{bucket.source}/{pick}")))
        bucket.put(f"copies/{pick}", jpeg_bytes(copy, quality=70))
    earlier = set(bucket.selected(first))
    changed = next(k for k in sorted(bucket.rows(load_pool(bucket))) if k not in earlier)
    bucket.put(changed, jpeg_bytes(Image.open(bucket.root / "first" / "rocket" / "03.jpg").rotate(180)))
    return run(bucket, aws_credentials, n_samples=3)


def load_pool(bucket: Bucket) -> Datapool:
    pool = Datapool.load(f"pool-{bucket.name}")
    assert isinstance(pool, Datapool)
    return pool


def test_the_first_run_processes_the_whole_bucket(bucket: Bucket, first: dict[str, Any]) -> None:
    discovered = 4 * len(FIRST_SCENES) + len(ODD_KEYS)
    assert first["counts"] | {"selected": 0} == {
        "discovered": discovered,
        "new": discovered,
        "corrupt": 0,
        "duplicates": 0,
        "missing": 0,
        "unreadable": 0,
        "moved": 0,
        "embedded": discovered,
        "selected": 0,
    }
    assert len(bucket.selected(first)) == first["counts"]["selected"] == 4
    assert bucket.run_json(first)["counts"] == first["counts"]
    latest = json.loads(bucket.get(f"{bucket.output}/latest.json"))
    assert latest["run_id"] == first["run_id"]
    pool = load_pool(bucket)
    assert (pool.version, pool.samples, pool.selected) == (1, discovered, 4)
    assert pool.model_onnx == first["artifacts"]["model.onnx"]
    manifest = bucket.rows(pool)
    assert set(manifest) >= set(ODD_KEYS)
    assert {k for k, row in manifest.items() if row["selected"]} == set(bucket.selected(first))
    assert all(len(row["embedding"]) == 16 and row["run_id"] == first["run_id"] for row in manifest.values())


def test_the_second_run_processes_only_what_is_new_or_changed(
    bucket: Bucket, first: dict[str, Any], second: dict[str, Any]
) -> None:
    new = 3 * len(NEW_SCENES) + len(bucket.selected(first))  # new scenes + copies
    assert second["counts"]["new"] == new + 1  # and the changed image
    assert second["counts"]["discovered"] == first["counts"]["discovered"] + new
    assert second["model"]["source"] == "the datapool's"
    assert second["model"]["onnx_sha256"] == first["model"]["onnx_sha256"]
    assert "train" not in second["timings"]
    # Training and export had nothing to do: they count as done, and the bar ends full.
    with get_client(sync_client=True) as client:
        [progress] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["curate-progress"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert progress.data == 100.0
    record = RunRecord.model_validate(second)
    assert progress.description == f"done: {outcome(record.counts, record.selection.note)}"
    pool = load_pool(bucket)
    assert (pool.version, pool.samples, pool.selected) == (2, second["counts"]["discovered"], 4 + 3)
    assert pool.model_onnx == first["artifacts"]["model.onnx"]  # embeddings stay comparable


def test_new_picks_are_diverse_against_earlier_picks(
    bucket: Bucket, first: dict[str, Any], second: dict[str, Any]
) -> None:
    earlier, picks = bucket.selected(first), bucket.selected(second)
    assert len(picks) == 3 and not set(picks) & set(earlier)
    assert not [p for p in picks if p.startswith("copies/")], "a near-duplicate of an earlier pick was picked"
    manifest = bucket.rows(load_pool(bucket))
    vector = {k: np.array(row["embedding"]) for k, row in manifest.items() if row["embedding"] is not None}
    copy_gap = max(np.linalg.norm(vector[f"copies/{k}"] - vector[k]) for k in earlier)
    pick_gap = min(np.linalg.norm(vector[p] - vector[e]) for p in picks for e in earlier)
    assert pick_gap > copy_gap


def test_process_all_starts_over(bucket: Bucket, aws_credentials: str, second: dict[str, Any]) -> None:
    everything = run(bucket, aws_credentials, n_samples=5, process_all=True)
    assert everything["counts"]["new"] == everything["counts"]["discovered"] == second["counts"]["discovered"]
    assert everything["model"]["source"] == "trained by this run"
    pool = load_pool(bucket)
    assert (pool.version, pool.selected) == (3, 5)
    assert pool.model_onnx == everything["artifacts"]["model.onnx"]


def test_retrain_trains_anew_reembeds_the_pool_and_keeps_earlier_picks(
    bucket: Bucket, aws_credentials: str, second: dict[str, Any]
) -> None:
    before = load_pool(bucket)
    earlier = {k for k, row in bucket.rows(before).items() if row["selected"]}
    record = run(bucket, aws_credentials, n_samples=2, training=TINY_TRAINING | {"retrain": True})
    assert record["counts"]["new"] == record["counts"]["discovered"]  # the whole pool, re-embedded
    assert record["model"]["source"] == "trained by this run"
    picks = set(bucket.selected(record))
    assert len(picks) == 2 and not picks & earlier
    after = load_pool(bucket)
    assert after.selected == before.selected + 2
    assert after.model_onnx == record["artifacts"]["model.onnx"]
    assert {k for k, row in bucket.rows(after).items() if row["selected"]} == earlier | picks


def test_the_relevant_filenames_file_may_live_in_the_bucket(
    bucket: Bucket, aws_credentials: str, tmp_path: Path
) -> None:
    bucket.put("relevant.txt", b"coffee/*\n!coffee/00.jpg\n")
    listing = discover_source(bucket.source, aws_credentials, "relevant.txt", (), tmp_path)
    assert [info.key for info in read_listing(listing)] == ["coffee/01.jpg", "coffee/02.jpg", "coffee/03.jpg"]


def test_a_missing_bucket_fails_before_any_work(aws_credentials: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="'winnow-no-such-bucket' does not exist"):
        curate(
            source="s3://winnow-no-such-bucket/raw",
            output=str(tmp_path / "out"),
            aws_credentials=aws_credentials,
            training=TINY_TRAINING,
        )
    assert not (tmp_path / "out" / "runs").exists()


def test_selected_images_are_copied_and_odd_keys_stay_inside(
    bucket: Bucket, aws_credentials: str, first: dict[str, Any], tmp_path: Path
) -> None:
    output = tmp_path / "out"
    record = curate(
        source=bucket.source,
        output=str(output),
        aws_credentials=aws_credentials,
        n_samples=100,
        training=TINY_TRAINING | {"enabled": False},
        selection={"copy_selected": True},
    )
    copied = sorted(p for p in (output / "selected").rglob("*") if p.is_file())
    assert len(copied) == record["counts"]["selected"] == record["counts"]["embedded"]
    assert all(p.resolve().is_relative_to(output / "selected") for p in copied)
    assert (output / "selected" / "odd" / "%2E%2E" / "dots.jpg").read_bytes() == bucket.get(
        f"{bucket.source}/odd/../dots.jpg"
    )


def test_a_local_folder_is_incremental_and_a_run_that_fails_after_its_commit_is_repaired(
    prefect_server: None, tmp_path: Path
) -> None:
    source, output = tmp_path / "photos", tmp_path / "out"
    write_scene_crops(source, FIRST_SCENES[:2], per_scene=4, side=64)
    first = curate(source=str(source), output=str(output), n_samples=2, training=TINY_TRAINING)
    pool_name = first["datapool"]["name"]
    write_scene_crops(source / "more", NEW_SCENES[:1], per_scene=2, side=64)
    # Copying the picks, which comes after the commit, fails: a file is where their folder goes.
    (output / "selected").write_text("in the way")
    copy = {"copy_selected": True}
    with pytest.raises(NotADirectoryError):
        curate(source=str(source), output=str(output), n_samples=1, training=TINY_TRAINING, selection=copy)
    pool = Datapool.load(pool_name)
    assert isinstance(pool, Datapool) and pool.version == 2 and pool.last_run_id != first["run_id"]
    failed = output / "runs" / str(pool.last_run_id)
    # Its picks are committed and latest.json names it; its run.json had no chance to say so.
    assert json.loads((output / "latest.json").read_text())["run_id"] == pool.last_run_id
    assert json.loads((failed / "run.json").read_text())["status"] == "published"

    (output / "selected").unlink()
    again = curate(
        source=str(source), output=str(output), n_samples=1, training=TINY_TRAINING, selection=copy
    )
    assert json.loads((failed / "run.json").read_text())["status"] == "committed"  # repaired
    assert (again["counts"]["new"], again["counts"]["selected"]) == (0, 0)  # nothing re-selected
    assert again["datapool"]["version"] == 3 and again["status"] == "committed"
    # Touching a file (new mtime, same size) makes it changed; nothing else is redone.
    touched = source / "more" / "immunohistochemistry" / "00.jpg"
    shutil.copyfile(touched, tmp_path / "copy.jpg")
    (tmp_path / "copy.jpg").replace(touched)
    third = curate(
        source=str(source), output=str(output), n_samples=1, training=TINY_TRAINING, selection=copy
    )
    assert third["counts"]["new"] == 1
    assert len(list((output / "selected").rglob("*.jpg"))) == third["counts"]["selected"]


def test_segments_are_merged_past_the_threshold_and_old_ones_pruned(
    prefect_server: None, tmp_path: Path
) -> None:
    source, output = tmp_path / "photos", tmp_path / "out"
    write_scene_crops(source, FIRST_SCENES[:2], per_scene=3, side=64)
    tidy = {"compact_after_segments": 2, "keep_versions": 1}

    def curate_now(n_samples: int) -> dict[str, Any]:
        return curate(
            source=str(source), output=str(output), n_samples=n_samples, training=TINY_TRAINING, state=tidy
        )

    first = curate_now(2)
    name = first["datapool"]["name"]
    runs = [first]
    for scene in NEW_SCENES:
        write_scene_crops(source / scene, (scene,), per_scene=2, side=64)
        runs.append(curate_now(1))
    # Versions 1-3 are the runs; the third run's 3 segments were merged into version 4.
    assert [r["datapool"]["version"] for r in runs] == [1, 2, 3]
    pool = Datapool.load(name)
    assert isinstance(pool, Datapool) and (pool.version, pool.compacted_from, len(pool.segments)) == (4, 3, 1)
    assert pool.last_run_id == runs[-1]["run_id"]
    rows = manifest_of(pool, lambda uri: Path(uri).read_bytes(), tmp_path)
    assert len(rows) == pool.samples == sum(r["counts"]["new"] for r in runs) == 10
    picks = {i for r in runs for i in selected_in(output, r)}
    assert {i for i, row in rows.items() if row["selected"]} == picks
    # Only the newest version is kept readable: the runs' own segments are gone.
    files = sorted(p.name for p in (output / "datapool" / name / "manifests").iterdir())
    assert files == [Path(pool.segments[0]).name]
    # The next run starts from the merged segment and adds its own.
    write_scene_crops(source / "last", ("grass",), per_scene=2, side=64)
    last = curate_now(1)
    assert (last["counts"]["new"], last["datapool"]["version"]) == (2, 5)
    assert last["datapool"]["samples_after"] == 12


def test_an_output_inside_the_source_is_never_curated_by_the_next_run(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    """Copies of the picks under raw/curated/selected/ are in the source's listing too: the
    second run must find nothing new, not its own copies."""
    name = new_bucket(s3_endpoint)
    write_scene_crops(tmp_path / "raw", ("coffee", "rocket"), per_scene=3, side=64)
    keys = upload_folder(s3_endpoint, tmp_path / "raw", name, "raw")
    options: dict[str, Any] = {
        "source": f"s3://{name}/raw",
        "output": f"s3://{name}/raw/curated",
        "aws_credentials": aws_credentials,
        "n_samples": 2,
        "training": TINY_TRAINING | {"enabled": False},
        "selection": {"copy_selected": True},
    }
    first = curate(**options)
    listed = s3_admin_client(s3_endpoint).list_objects_v2(Bucket=name, Prefix="raw/curated/selected/")
    assert len(listed["Contents"]) == 2  # the copies are there, inside the source
    second = curate(**options)
    assert first["counts"]["discovered"] == second["counts"]["discovered"] == len(keys)
    assert (second["counts"]["new"], second["counts"]["selected"]) == (0, 0)


def test_an_archived_object_is_recorded_and_the_run_goes_on(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    name = new_bucket(s3_endpoint)
    write_scene_crops(tmp_path / "raw", ("coffee", "rocket"), per_scene=2, side=64)
    keys = upload_folder(s3_endpoint, tmp_path / "raw", name, "raw")
    s3_admin_client(s3_endpoint).put_object(
        Bucket=name,
        Key="raw/cold/old.jpg",
        Body=(tmp_path / "raw" / keys[0]).read_bytes(),
        StorageClass="DEEP_ARCHIVE",
    )
    options: dict[str, Any] = {
        "source": f"s3://{name}/raw",
        "output": str(tmp_path / "out"),
        "aws_credentials": aws_credentials,
        "n_samples": 2,
        "training": TINY_TRAINING,
    }
    record = curate(**options)
    assert record["counts"]["unreadable"] == 1
    assert record["counts"]["embedded"] == len(keys)
    unreadable = json.loads(Path(record["artifacts"]["unreadable.json"]).read_text())
    assert list(unreadable) == ["cold/old.jpg"]
    assert "archive storage class (InvalidObjectState)" in unreadable["cold/old.jpg"]
    # Not committed: once restored, the next run reads it.
    s3_admin_client(s3_endpoint).restore_object(
        Bucket=name, Key="raw/cold/old.jpg", RestoreRequest={"Days": 1}
    )
    again = curate(**options)
    assert (again["counts"]["new"], again["counts"]["unreadable"]) == (1, 0)
    assert again["counts"]["duplicates"] == 1  # read at last: the same bytes as coffee's first crop


def test_picks_moved_or_renamed_are_recognised_by_content_and_never_picked_again(
    prefect_server: None, tmp_path: Path
) -> None:
    source, output = tmp_path / "photos", tmp_path / "out"
    write_scene_crops(source, FIRST_SCENES, per_scene=2, side=64)
    first = curate(source=str(source), output=str(output), n_samples=2, training=TINY_TRAINING)
    picks = (output / "runs" / first["run_id"] / "selected_filenames.txt").read_text().split()
    # One pick moves into a subfolder, the other is renamed.
    (source / "archive").mkdir()
    (source / picks[0]).replace(source / "archive" / Path(picks[0]).name)
    (source / picks[1]).replace(source / picks[1].replace(".jpg", "-renamed.jpg"))
    moved_to = {
        picks[0]: f"archive/{Path(picks[0]).name}",
        picks[1]: picks[1].replace(".jpg", "-renamed.jpg"),
    }

    second = curate(source=str(source), output=str(output), n_samples=2, training=TINY_TRAINING)
    assert (second["counts"]["new"], second["counts"]["moved"], second["counts"]["selected"]) == (2, 2, 0)
    rows = {
        r["id"]: r for r in pq.read_table(output / "runs" / second["run_id"] / "samples.parquet").to_pylist()
    }
    for old, new in moved_to.items():
        assert (rows[new]["status"], rows[new]["duplicate_of"]) == ("moved", old)
    pool = Datapool.load(second["datapool"]["name"])
    assert isinstance(pool, Datapool) and pool.selected == 2
    manifest = manifest_of(pool, lambda uri: Path(uri).read_bytes(), tmp_path)
    assert {i for i, row in manifest.items() if row["selected"]} == set(moved_to.values())
    assert all(manifest[new]["embedding"] is not None for new in moved_to.values())
    assert not set(picks) & set(manifest)  # the old keys are gone from the pool

    third = curate(source=str(source), output=str(output), n_samples=2, training=TINY_TRAINING)
    assert (third["counts"]["new"], third["counts"]["moved"]) == (0, 0)
