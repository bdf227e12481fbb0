"""The curate flow over a folder of images and videos: frames are inspected, embedded and
selected with the images, the picks are written as image files, bad videos are recorded,
and the datapool decides per video what the next run processes."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows.curate import curate
from tasks.config import VideoConfig
from tasks.datapool.block import Datapool
from tasks.datapool.state import version_key
from tasks.ingest.planning import plan_run
from tasks.media.decode import resize_square
from tasks.media.video import SampledFrame, sample_frames
from tasks.records.keys import frame_id
from tasks.records.manifest import MANIFEST_SCHEMA
from tasks.records.segments import read_live
from tasks.records.shards import listing_table
from tasks.storage.interface import ObjectInfo
from tests.images import SCENES, write_scene_crops
from tests.s3 import new_bucket, s3_admin_client, upload_folder
from tests.test_curate_flow import TINY_TRAINING, run_dir
from tests.videos import truncate, write_audio_only, write_video

VIDEO = {"every_n_frames": 2}
CLIPS = {"clips/road.mp4": ("libx264", 20), "clips/yard.mkv": ("libx264", 16), "cam/old.avi": ("mpeg4", 12)}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    write_scene_crops(root / "photos", per_scene=2)
    for key, (codec, frames) in CLIPS.items():
        write_video(root / key, codec, frames=frames, size=(64, 48))
    (root / "copies").mkdir()
    shutil.copyfile(root / "clips/road.mp4", root / "copies/road.mp4")
    (root / "bad").mkdir()
    (root / "bad/empty.mp4").write_bytes(b"")
    (root / "bad/notes.mp4").write_text("meeting notes, not a video")
    write_audio_only(root / "bad/sound.mp4")
    write_video(root / "bad/cut.mkv", frames=20, size=(64, 48))
    truncate(root / "bad/cut.mkv", 0.5)
    return root


@pytest.fixture(scope="module")
def first_run(prefect_server: None, source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("output")
    return curate(source=str(source), output=str(output), proportion=1.0, training=TINY_TRAINING, video=VIDEO)


def rows_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in pq.read_table(run_dir(record) / "samples.parquet").to_pylist()}


def test_frames_are_samples_with_their_video_index_and_time(first_run: dict[str, Any], source: Path) -> None:
    rows = rows_of(first_run)
    for key, (_, frames) in CLIPS.items():
        ids = [frame_id(key, i) for i in range(0, frames, 2)]
        assert all(rows[i]["status"] == "ok" for i in ids), key
        assert [rows[i]["frame_index"] for i in ids] == list(range(0, frames, 2))
        assert [rows[i]["timestamp_s"] for i in ids] == pytest.approx([i / 10 for i in range(0, frames, 2)])
        assert {(rows[i]["kind"], rows[i]["key"], rows[i]["width"], rows[i]["height"]) for i in ids} == {
            ("frame", key, 64, 48)
        }
        assert all(rows[i]["uniform_row_ratio"] is not None for i in ids)
    photos = [r for r in rows.values() if r["kind"] == "image"]
    assert photos and all(r["frame_index"] is None and r["timestamp_s"] is None for r in photos)
    # A copy of a video is a copy of each of its frames; a video's own frames are not copies.
    copy = frame_id("copies/road.mp4", 4)
    assert (rows[copy]["status"], rows[copy]["duplicate_of"]) == ("duplicate", frame_id("clips/road.mp4", 4))


def test_bad_videos_are_in_corrupt_json_and_a_cut_one_keeps_its_frames(first_run: dict[str, Any]) -> None:
    corrupt = json.loads((run_dir(first_run) / "corrupt.json").read_text())
    assert set(corrupt) == {"bad/empty.mp4", "bad/notes.mp4", "bad/sound.mp4", "bad/cut.mkv"}
    assert corrupt["bad/empty.mp4"] == "zero-byte file"
    assert corrupt["bad/notes.mp4"].startswith("video: cannot open: Invalid data")
    assert corrupt["bad/sound.mp4"] == "video: no video stream"
    assert corrupt["bad/cut.mkv"].startswith("video: decoding stopped at frame ")
    rows = rows_of(first_run)
    kept = [r for r in rows.values() if r["key"] == "bad/cut.mkv" and r["kind"] == "frame"]
    assert kept and all(r["status"] == "ok" for r in kept)
    clean = sum(r["status"] == "ok" for r in rows.values())
    assert first_run["counts"]["embedded"] == first_run["counts"]["selected"] == clean


def test_selected_frames_are_written_with_the_pixels_that_were_embedded(
    first_run: dict[str, Any], source: Path
) -> None:
    folder = run_dir(first_run)
    selected = (folder / "selected_filenames.txt").read_text().splitlines()
    frames = [i for i in selected if "#frame=" in i]
    written = sorted(p.relative_to(folder / "selected_frames").as_posix() for p in folder.rglob("*.png"))
    expected = sorted(f"{i.replace('#frame=', '__frame=')}.png" for i in frames)
    assert written == expected and len(written) > 20
    assert first_run["artifacts"]["selected_frames"] == str(folder / "selected_frames")
    table = pq.read_table(folder / "embeddings.parquet")
    embedding = dict(zip(table["id"].to_pylist(), table["embedding"].to_pylist(), strict=True))
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    sampled = sample_frames(source / "clips/yard.mkv", VideoConfig(**VIDEO))
    video = {f.index: f.rgb for f in sampled if isinstance(f, SampledFrame)}
    for index in (0, 6, 14):
        rgb = np.asarray(Image.open(folder / f"selected_frames/clips/yard.mkv__frame={index:06d}.png"))
        np.testing.assert_array_equal(rgb, video[index])  # full resolution, as decoded in order
        model_input = resize_square(Image.fromarray(rgb), 32)[None]
        published = np.array(embedding[frame_id("clips/yard.mkv", index)], dtype=np.float32)
        np.testing.assert_allclose(session.run(None, {"images": model_input})[0][0], published, atol=1e-5)


def test_sequence_selection_picks_whole_windows_of_consecutive_frames(
    first_run: dict[str, Any], source: Path
) -> None:
    record = curate(
        source=str(source),
        output=first_run["output"],
        n_samples=9,
        training=TINY_TRAINING,
        process_all=True,
        video=VIDEO | {"sequence_length": 3, "frame_format": "jpeg"},
    )
    rows = rows_of(record)
    picks = (run_dir(record) / "selected_filenames.txt").read_text().splitlines()
    assert len(picks) == 9
    windows = [picks[start : start + 3] for start in range(0, 9, 3)]
    for window in windows:
        key = rows[window[0]]["key"]
        assert {rows[i]["key"] for i in window} == {key}
        clean = sorted(r["frame_index"] for r in rows.values() if r["key"] == key and r["status"] == "ok")
        first = clean.index(rows[window[0]]["frame_index"])
        assert first % 3 == 0 and [rows[i]["frame_index"] for i in window] == clean[first : first + 3]
    jpegs = list((run_dir(record) / "selected_frames").rglob("*.jpg"))
    assert len(jpegs) == 9


def test_the_datapool_decides_per_video(first_run: dict[str, Any], source: Path) -> None:
    """Unchanged videos keep every frame, a changed one is sampled again, a vanished one leaves."""
    work = Path(first_run["output"]).parent / "incremental-source"
    shutil.copytree(source, work)
    output = str(Path(first_run["output"]).parent / "incremental-output")
    first = curate(source=str(work), output=output, n_samples=4, training=TINY_TRAINING, video=VIDEO)
    write_video(work / "clips/yard.mkv", frames=8, size=(64, 48))  # rewritten: 4 frames sampled now
    os.utime(work / "clips/yard.mkv", ns=(1, 1))
    (work / "cam/old.avi").unlink()
    second = curate(source=str(work), output=output, n_samples=4, training=TINY_TRAINING, video=VIDEO)
    assert second["counts"]["new"] == 1  # files: the rewritten video
    assert set(rows_of(second)) == {frame_id("clips/yard.mkv", i) for i in range(0, 8, 2)}
    name, version = second["datapool"]["name"], second["datapool"]["version"]
    state = Datapool.model_validate_json((Path(output) / version_key(name, version)).read_text())
    manifest = read_live(state.segments, MANIFEST_SCHEMA.names).to_pylist()
    # The second run's segment holds only what changed: the rewritten video, and tombstones.
    changes = pq.read_table(state.segments[-1]).to_pylist()
    assert {(r["key"], r["id"] is None) for r in changes} == {
        ("clips/yard.mkv", True),
        ("clips/yard.mkv", False),
        ("cam/old.avi", True),
    }
    keys = {r["key"] for r in manifest}
    assert "cam/old.avi" not in keys
    yard = sorted(r["id"] for r in manifest if r["key"] == "clips/yard.mkv")
    assert yard == [frame_id("clips/yard.mkv", i) for i in range(0, 8, 2)]
    road = [r for r in manifest if r["key"] == "clips/road.mp4"]
    assert len(road) == 10 and {r["run_id"] for r in road} == {first["run_id"]}


def test_manifests_written_before_videos_are_read_by_key(tmp_path: Path) -> None:
    old = pa.table(
        {
            "id": ["a.jpg", "b.jpg"],
            "version": ["1", "1"],
            "size": [3, 3],
            "status": ["ok", "ok"],
            "reason": [None, None],
            "content_hash": ["x", "y"],
            "embedding": pa.array([None, None], pa.list_(pa.float32())),
            "selected": [True, False],
            "run_id": ["r", "r"],
        }
    )
    pq.write_table(old, tmp_path / "old.parquet")
    previous = read_live([str(tmp_path / "old.parquet")], MANIFEST_SCHEMA.names)
    assert previous.schema == MANIFEST_SCHEMA and previous["key"].to_pylist() == ["a.jpg", "b.jpg"]
    listed = [ObjectInfo("a.jpg", 3, "1"), ObjectInfo("b.jpg", 3, "2")]
    plan = plan_run(listing_table(listed), previous, reprocess_all=False)
    kept = previous.filter(plan.keeps)
    assert [o.key for o in plan.to_process] == ["b.jpg"]
    assert kept["id"].to_pylist() == ["a.jpg"] and plan.previously_selected == {"a.jpg"}


def test_videos_in_a_bucket_are_sampled_and_their_picks_written_to_the_bucket(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    root = tmp_path / "bucket"
    write_scene_crops(root / "photos", per_scene=1)
    write_video(root / "clips/road.mp4", frames=12, size=(64, 48))
    bucket = new_bucket(s3_endpoint)
    upload_folder(s3_endpoint, root, bucket, "raw")
    record = curate(
        source=f"s3://{bucket}/raw",
        output=f"s3://{bucket}/curated",
        aws_credentials=aws_credentials,
        cache_dir=str(tmp_path / "cache"),
        proportion=1.0,
        training=TINY_TRAINING,
        video=VIDEO,
    )
    assert record["counts"]["embedded"] == len(SCENES) + 6  # every second of the 12 frames
    client = s3_admin_client(s3_endpoint)
    prefix = f"curated/runs/{record['run_id']}/selected_frames/"
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    written = sorted(o["Key"].removeprefix(prefix) for o in listed)
    assert written == [f"clips/road.mp4__frame={i:06d}.png" for i in range(0, 12, 2)]
    body = client.get_object(Bucket=bucket, Key=f"{prefix}clips/road.mp4__frame=000004.png")["Body"].read()
    decoded = {f.index: f.rgb for f in sample_frames(root / "clips/road.mp4", VideoConfig(**VIDEO))}
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), decoded[4])
    # The videos were downloaded to the cache to be decoded, and removed after.
    assert not [p for p in (tmp_path / "cache").rglob("*.mp4")]
