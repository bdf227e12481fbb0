"""The curate flow end to end, on real photographs and the bad files of a real upload."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.curate import curate
from tasks.config import TrainingConfig
from tasks.media.decode import Decoded, decode_image, resize_square
from tests.images import write_bad_files, write_scene_crops

TINY_TRAINING = TrainingConfig(backbone="resnet10", width=8, input_size=32, embedding_dim=16, epochs=2)
RUN_FILES = {
    "run.json",
    "selected_filenames.txt",
    "samples.parquet",
    "embeddings.parquet",
    "embeddings.csv",
    "corrupt.json",
    "unreadable.json",
    "duplicates.json",
    "model.onnx",
    "checkpoint.pt",
    "selection.parquet",
    "report.html",
    "report.pdf",
    "report.json",
}
SAMPLE_COLUMNS = [
    "id",
    "key",
    "kind",
    "frame_index",
    "timestamp_s",
    "status",
    "reason",
    "bytes",
    "width",
    "height",
    "luminance",
    "contrast",
    "sharpness",
    "snr",
    "uniform_row_ratio",
    "entropy",
    "grayscale",
    "content_hash",
    "duplicate_of",
    "flags",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, str]]:
    root = tmp_path_factory.mktemp("source")
    good = write_scene_crops(root, per_scene=5)
    bad = write_bad_files(root)
    shutil.copyfile(root / good[0], root / "zz-copy.jpg")
    return root, good, bad


@pytest.fixture(scope="module")
def first_run(
    prefect_server: None,
    source: tuple[Path, list[str], dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    root, _, _ = source
    output = tmp_path_factory.mktemp("output")
    return curate(source=str(root), output=str(output), n_samples=6, training=TINY_TRAINING)


def run_dir(record: dict[str, Any]) -> Path:
    return Path(record["output"]) / "runs" / record["run_id"]


def test_a_run_writes_every_file_of_the_contract(first_run: dict[str, Any]) -> None:
    folder = run_dir(first_run)
    assert {p.name for p in folder.iterdir()} == RUN_FILES
    assert set(first_run["artifacts"]) == RUN_FILES
    latest = json.loads((Path(first_run["output"]) / "latest.json").read_text())
    assert latest["run_id"] == first_run["run_id"]
    on_disk = json.loads((folder / "run.json").read_text())
    assert on_disk["counts"] == first_run["counts"]
    assert on_disk["config"]["training"]["input_size"] == 32
    assert on_disk["status"] == "committed"
    assert on_disk["datapool"]["version"] == first_run["datapool"]["version"] == 1
    assert set(on_disk["timings"]) >= {"discover", "inspect", "train", "export", "embed", "select"}


def test_counts_and_corrupt_files_with_reasons(first_run: dict[str, Any], source: Any) -> None:
    _, good, bad = source
    assert first_run["counts"] == {
        "discovered": len(good) + len(bad) + 1,
        "new": len(good) + len(bad) + 1,
        "corrupt": len(bad),
        "duplicates": 1,
        "missing": 0,
        "unreadable": 0,
        "moved": 0,
        "embedded": len(good),
        "selected": 6,
    }
    corrupt = json.loads((run_dir(first_run) / "corrupt.json").read_text())
    assert set(corrupt) == set(bad)
    for key, word in bad.items():
        assert word in corrupt[key]


def test_samples_table_holds_metadata_and_duplicates(first_run: dict[str, Any], source: Any) -> None:
    _, good, _ = source
    samples = pq.read_table(run_dir(first_run) / "samples.parquet")
    assert samples.column_names == SAMPLE_COLUMNS
    rows = {r["id"]: r for r in samples.to_pylist()}
    copy = rows["zz-copy.jpg"]
    assert (copy["status"], copy["duplicate_of"]) == ("duplicate", good[0])
    for key in good:
        row = rows[key]
        assert row["status"] == "ok"
        assert (row["width"], row["height"]) == (64, 64)
        assert 0 < row["luminance"] < 1
        assert row["sharpness"] > 0
        assert row["content_hash"] != copy["content_hash"] or key == good[0]


def test_embeddings_come_from_the_published_model(first_run: dict[str, Any], source: Any) -> None:
    root, good, _ = source
    folder = run_dir(first_run)
    table = pq.read_table(folder / "embeddings.parquet")
    assert table["id"].to_pylist() == sorted(good)
    vectors = np.array(table["embedding"].to_pylist(), dtype=np.float32)
    assert vectors.shape == (len(good), 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # The CSV in the Lightly layout holds the same numbers.
    lines = (folder / "embeddings.csv").read_text().splitlines()
    assert lines[0] == ",".join(["filenames", *(f"embedding_{i}" for i in range(16)), "labels"])
    first = lines[1].split(",")
    assert first[0] == table["id"][0].as_py()
    np.testing.assert_allclose(np.array(first[1:-1], dtype=np.float32), vectors[0], rtol=1e-6)
    # Decoding a file afresh and running model.onnx gives its published embedding.
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    decoded = decode_image((root / good[3]).read_bytes(), 10**8, 256)
    assert isinstance(decoded, Decoded)
    image = resize_square(decoded.rgb, 32)[None]
    expected = session.run(None, {"images": image})[0][0]
    np.testing.assert_allclose(vectors[table["id"].to_pylist().index(good[3])], expected, atol=1e-5)
    # Below INT8_FROM_SAMPLES on the CPU the model stays fp32: quantizing would cost more than
    # it saves, so no quantize stage ran and no second graph is published.
    assert first_run["model"]["precision"] == "fp32"
    assert "quantize" not in first_run["timings"] and not (folder / "model.fp32.onnx").exists()


def test_selection_is_clean_unique_and_ranked(first_run: dict[str, Any], source: Any) -> None:
    _, good, _ = source
    folder = run_dir(first_run)
    selected = (folder / "selected_filenames.txt").read_text().splitlines()
    assert len(selected) == len(set(selected)) == 6
    assert set(selected) <= set(good)
    selection = pq.read_table(folder / "selection.parquet").to_pylist()
    assert [r["id"] for r in selection] == selected
    assert [r["rank"] for r in selection] == list(range(6))
    assert all(r["reason"].startswith("representative: nearest pick of") for r in selection)
    # The default represents the pool better than random subsets of the same size do.
    quality = json.loads((folder / "run.json").read_text())["selection"]["quality"]
    chosen, random = quality["selected"], quality["random"]
    assert chosen["mean_distance_to_nearest_pick"] < random["mean_distance_to_nearest_pick"]["mean"]
    assert chosen["coverage"] > random["coverage"]["mean"]
    assert len(quality["random_seeds"]) == 10 and random["coverage"]["std"] > 0


def test_the_same_command_again_finds_nothing_new(first_run: dict[str, Any], source: Any) -> None:
    root, good, bad = source
    second = curate(source=str(root), output=first_run["output"], n_samples=6, training=TINY_TRAINING)
    assert second["counts"]["discovered"] == len(good) + len(bad) + 1
    assert (second["counts"]["new"], second["counts"]["embedded"], second["counts"]["selected"]) == (0, 0, 0)
    assert second["model"]["source"] == "the datapool's"
    assert second["model"]["onnx_sha256"] == first_run["model"]["onnx_sha256"]
    assert (second["datapool"]["base_version"], second["datapool"]["version"]) == (1, 2)
    assert second["datapool"]["selected"] == 6
    assert (run_dir(second) / "selected_filenames.txt").read_text() == ""
    assert second["selection"]["note"] == "nothing new to select: this run has no new clean samples"
    latest = json.loads((Path(first_run["output"]) / "latest.json").read_text())
    assert latest["run_id"] == second["run_id"]
    # Nothing to inspect, train or embed: those stages count as done, and the bar ends full.
    with get_client(sync_client=True) as client:
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["curate-progress"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert [artifact.data for artifact in progress] == [100.0]


def test_process_all_reuses_training_and_embeddings_from_the_cache(
    first_run: dict[str, Any], source: Any
) -> None:
    root, _, _ = source
    again = curate(
        source=str(root), output=first_run["output"], n_samples=6, training=TINY_TRAINING, process_all=True
    )
    assert again["run_id"] != first_run["run_id"]
    assert again["counts"] == first_run["counts"]
    assert again["cached_tasks"] == dict.fromkeys(("inspect", "train", "export", "embed"), "1/1")
    assert again["model"]["onnx_sha256"] == first_run["model"]["onnx_sha256"]
    assert (run_dir(again) / "selected_filenames.txt").read_text() == (
        run_dir(first_run) / "selected_filenames.txt"
    ).read_text()


def test_asking_for_more_than_the_pool_selects_all_and_says_so(
    first_run: dict[str, Any], source: Any
) -> None:
    root, good, _ = source
    record = curate(
        source=str(root), output=first_run["output"], n_samples=500, training=TINY_TRAINING, process_all=True
    )
    assert record["counts"]["selected"] == len(good)
    note = record["selection"]["note"]
    assert f"asked for 500 samples but this run has only {len(good)} new clean samples" in note


def test_a_missing_source_fails_before_any_work(prefect_server: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"source: .*does not exist"):
        curate(source=str(tmp_path / "missing"), output=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_another_source_into_the_same_datapool_fails_before_any_work(
    first_run: dict[str, Any], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    write_scene_crops(other, per_scene=1)
    output = Path(first_run["output"])
    runs_before = sorted((output / "runs").iterdir())
    with pytest.raises(ValueError, match=rf"holds the samples and picks of source .*, not {other}"):
        curate(source=str(other), output=str(output), n_samples=2, training=TINY_TRAINING)
    assert sorted((output / "runs").iterdir()) == runs_before  # nothing was published


def test_an_empty_source_fails_naming_it(prefect_server: None, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match="holds no images"):
        curate(source=str(tmp_path / "empty"), output=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "runs").exists()


BRIGHT_ONLY = {
    "input": {"type": "METADATA", "key": "luminance"},
    "strategy": {"type": "THRESHOLD", "operation": ">=", "value": 0.35},
}


def rerun_bright_only(
    first_run: dict[str, Any], source: Any, n_samples: int, then: list[dict[str, Any]]
) -> tuple[dict[str, Any], set[str], set[str]]:
    """The first run's source again from scratch, BRIGHT_ONLY then the `then` strategies.
    Returns (run.json, ids of the bright clean samples, ids of all clean samples)."""
    root, _, _ = source
    record = curate(
        source=str(root),
        output=first_run["output"],
        n_samples=n_samples,
        training=TINY_TRAINING,
        process_all=True,
        selection={"strategies": [BRIGHT_ONLY, *then]},
    )
    rows = pq.read_table(run_dir(record) / "samples.parquet").to_pylist()
    clean = {r["id"] for r in rows if r["status"] == "ok"}
    return record, {r["id"] for r in rows if r["id"] in clean and r["luminance"] >= 0.35}, clean


def test_strategies_filter_and_balance_a_real_run(first_run: dict[str, Any], source: Any) -> None:
    record, bright, clean = rerun_bright_only(
        first_run,
        source,
        8,
        [
            {"input": {"type": "METADATA", "key": "folder"}, "strategy": {"type": "BALANCE"}},
            {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
        ],
    )
    picks = (run_dir(record) / "selected_filenames.txt").read_text().splitlines()
    assert len(bright) < len(clean)  # the threshold does leave samples out
    assert 0 < len(picks) <= 8 and set(picks) <= bright
    folders = Counter(p.split("/")[0] for p in picks)
    admissible = {i.split("/")[0] for i in bright}
    share = len(picks) / len(admissible)
    assert all(abs(folders[f] - share) <= 1 for f in admissible), (folders, admissible)


def test_representative_takes_only_what_passes_the_thresholds(first_run: dict[str, Any], source: Any) -> None:
    record, bright, _ = rerun_bright_only(
        first_run, source, 5, [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "REPRESENTATIVE"}}]
    )
    selection = pq.read_table(run_dir(record) / "selection.parquet").to_pylist()
    assert len(selection) == 5 and {r["id"] for r in selection} <= bright
    assert all(r["reason"].startswith("representative: nearest pick of") for r in selection)
    # The random baseline draws from the same admissible candidates.
    assert record["selection"]["quality"]["random_from"] == len(bright)


def test_with_the_datapools_model_new_shards_are_embedded_as_they_are_inspected(tmp_path: Path) -> None:
    """The overlapped path (embed tasks waiting on inspect tasks) gives each new sample the
    embedding its file gets when decoded afresh and run through the published model."""
    root = tmp_path / "photos"
    write_scene_crops(root / "week1", per_scene=2)
    options: dict[str, Any] = {"output": str(tmp_path / "out"), "n_samples": 3, "training": TINY_TRAINING}
    first = curate(source=str(root), inputs={"shard_size": 4}, **options)
    new = write_scene_crops(root / "week2", per_scene=2, side=80)
    second = curate(source=str(root), inputs={"shard_size": 4}, **options)
    assert first["overlapped_stages"] == [] and second["overlapped_stages"] == ["inspect", "embed"]
    assert second["datapool"]["model_reused"] and second["counts"]["embedded"] == len(new)
    folder = run_dir(second)
    table = pq.read_table(folder / "embeddings.parquet")
    published = dict(zip(table["id"].to_pylist(), table["embedding"].to_pylist(), strict=True))
    assert sorted(published) == sorted(f"week2/{key}" for key in new)
    session = ort.InferenceSession(str(run_dir(first) / "model.onnx"), providers=["CPUExecutionProvider"])
    for key in new:
        decoded = decode_image((root / "week2" / key).read_bytes(), 10**8, 256)
        assert isinstance(decoded, Decoded)
        expected = session.run(None, {"images": resize_square(decoded.rgb, 32)[None]})[0][0]
        np.testing.assert_allclose(published[f"week2/{key}"], expected, atol=1e-5)
