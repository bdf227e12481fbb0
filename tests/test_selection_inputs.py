"""The user's selection inputs: a custom metadata file, a regular expression over the key,
SCORES files and query images, through real flow runs on real photographs."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.curate import curate
from tasks.config import ChecksConfig, SelectionConfig
from tasks.records.shards import write_listing
from tasks.selection.inputs import prepare_selection_inputs, values_for
from tasks.storage.interface import ObjectInfo
from tests.images import SCENES, write_scene_crops
from tests.test_curate_flow import TINY_TRAINING

PER_SCENE = 5


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Crops a folder per scene; metadata.csv marks 'camera' as night, scores.parquet
    gives every scene's first crop a low score."""
    root = tmp_path_factory.mktemp("source")
    keys = write_scene_crops(root, per_scene=PER_SCENE)
    rows = [f"{k},{int(k.startswith('camera/'))},{'indoor' if 'coffee' in k else 'outdoor'}" for k in keys]
    (root / "metadata.csv").write_text("key,night,site\n" + "\n".join(rows) + "\n")
    scores = [0.1 if k.endswith("/00.jpg") else 0.5 + i / 100 for i, k in enumerate(keys)]
    pq.write_table(pa.table({"id": keys, "uncertainty": scores}), root / "scores.parquet")
    return root, keys


def run(source: Path, output: Path, n_samples: int, selection: dict[str, Any]) -> dict[str, Any]:
    return curate(
        source=str(source),
        output=str(output),
        n_samples=n_samples,
        training=TINY_TRAINING,
        selection=SelectionConfig(**selection),
    )


def selected(record: dict[str, Any]) -> list[str]:
    return Path(record["artifacts"]["selected_filenames.txt"]).read_text().split()


def test_thresholds_from_files_and_balance_over_a_key_pattern(
    prefect_server: None, source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, _ = source
    record = run(
        root,
        tmp_path / "out",
        10,
        {
            "metadata_file": "metadata.csv",
            "metadata_from_key": r"^(?P<scene>[a-z_]+)/",
            "strategies": [
                {
                    "input": {"type": "SCORES", "file": "scores.parquet", "score": "uncertainty"},
                    "strategy": {"type": "THRESHOLD", "operation": ">", "value": 0.2},
                },
                {
                    "input": {"type": "METADATA", "key": "night"},
                    "strategy": {"type": "THRESHOLD", "operation": "<", "value": 0.5},
                },
                {"input": {"type": "METADATA", "key": "scene"}, "strategy": {"type": "BALANCE"}},
                {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
            ],
        },
    )
    picks = selected(record)
    assert len(picks) == 10
    assert not [p for p in picks if p.endswith("/00.jpg")]  # the low scores
    assert not [p for p in picks if p.startswith("camera/")]  # night, by the metadata file
    # Five scenes pass both thresholds: uniform balance gives each exactly two of ten.
    assert Counter(p.split("/")[0] for p in picks) == {s: 2 for s in SCENES if s != "camera"}
    balance = record["selection"]["quality"]["selected"]["balance"]["scene"]
    assert balance == pytest.approx(math.log(5) / math.log(len(SCENES)))


def test_similarity_to_a_query_image_file(
    prefect_server: None, source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, _ = source
    query = tmp_path / "query.jpg"
    shutil.copyfile(root / "rocket" / "02.jpg", query)  # outside the source: a file the user has
    record = run(
        root,
        tmp_path / "out",
        4,
        {"strategies": [{"strategy": {"type": "SIMILARITY", "query_images": [str(query)]}}]},
    )
    picks = selected(record)
    table = pq.read_table(record["artifacts"]["embeddings.parquet"]).to_pydict()
    vectors = dict(zip(table["id"], np.array(table["embedding"], dtype=np.float32), strict=True))
    # The query is a copy of rocket/02.jpg, so it embeds as that sample does: it comes
    # first, then the samples most similar to it.
    closeness = {i: float(v @ vectors["rocket/02.jpg"]) for i, v in vectors.items()}
    assert picks[0] == "rocket/02.jpg"
    assert set(picks) == set(sorted(closeness, key=closeness.__getitem__, reverse=True)[:4])


def test_a_bad_scores_file_fails_the_run_before_any_image_is_decoded(
    prefect_server: None, source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, keys = source
    scores = tmp_path / "scores.csv"
    scores.write_text("id,loss\n" + "".join(f"{k},0.5\n" for k in keys) + "elsewhere/x.jpg,0.9\n")
    strategy = {
        "input": {"type": "SCORES", "file": str(scores), "score": "loss"},
        "strategy": {"type": "WEIGHTS"},
    }
    with pytest.raises(ValueError, match=r"selection.strategies.0.input.file: .*\['elsewhere/x.jpg'\]"):
        run(root, tmp_path / "out", 3, {"strategies": [strategy]})
    assert not (tmp_path / "out" / "cache" / "inspect").exists()


def check(
    root: Path, keys: list[str], tmp_path: Path, selection: dict[str, Any], input_size: int = 32
) -> None:
    listing = write_listing(str(root), [ObjectInfo(k, 1, "v") for k in keys], tmp_path / "listing")
    config = SelectionConfig(**selection)
    prepare_selection_inputs(config, str(root), None, listing, input_size, ChecksConfig(), tmp_path / "in")


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            {
                "metadata_file": "metadata.csv",
                "strategies": [
                    {"input": {"type": "METADATA", "key": "weather"}, "strategy": {"type": "BALANCE"}}
                ],
            },
            r"selection.strategies.0.input.key: METADATA key 'weather' is not built in and not a column "
            r"of metadata_file 'metadata.csv' \(columns: night, site\)",
        ),
        (
            {
                "metadata_file": "metadata.csv",
                "strategies": [
                    {
                        "input": {"type": "METADATA", "key": "site"},
                        "strategy": {"type": "THRESHOLD", "operation": ">", "value": 1},
                    }
                ],
            },
            r"selection.strategies.0.input.key: THRESHOLD needs a numeric key, and 'site' in 'metadata.csv'",
        ),
        (
            {
                "strategies": [
                    {
                        "input": {"type": "SCORES", "file": "scores.parquet", "score": "loss"},
                        "strategy": {"type": "WEIGHTS"},
                    }
                ]
            },
            r"selection.strategies.0.input.score: 'loss' is not a column of 'scores.parquet'",
        ),
        (
            {"metadata_file": "nowhere.csv"},
            r"selection.metadata_file: 'nowhere.csv' not found",
        ),
        (
            {"strategies": [{"strategy": {"type": "SIMILARITY", "query_images": ["metadata.csv"]}}]},
            r"selection.strategies.0.strategy.query_images: 'metadata.csv' does not decode: not an image",
        ),
    ],
)
def test_bad_selection_inputs_name_the_field_and_the_value(
    source: tuple[Path, list[str]], tmp_path: Path, selection: dict[str, Any], message: str
) -> None:
    root, keys = source
    with pytest.raises(ValueError, match=message):
        check(root, keys, tmp_path, selection)


def test_values_are_found_by_key_for_a_videos_frames_and_missing_ones_are_empty(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text("key,site,speed\nclips/a.mp4,harbour,3.5\nb.jpg,depot,\n")
    keys = ["clips/a.mp4", "b.jpg", "c.jpg"]
    listing = write_listing(str(tmp_path), [ObjectInfo(k, 1, "v") for k in keys], tmp_path / "listing")
    config = SelectionConfig(metadata_file="meta.csv")
    inputs = prepare_selection_inputs(
        config, str(tmp_path), None, listing, 32, ChecksConfig(), tmp_path / "in"
    )
    assert inputs.metadata is not None
    ids = ["clips/a.mp4#frame=000012", "b.jpg", "c.jpg"]
    sample_keys = ["clips/a.mp4", "b.jpg", "c.jpg"]
    assert values_for(inputs.metadata, "site", ids, sample_keys).tolist() == ["harbour", "depot", ""]
    speed = values_for(inputs.metadata, "speed", ids, sample_keys)
    assert speed[0] == 3.5 and np.isnan(speed[1:]).all()
    assert json.loads(inputs.model_dump_json())["metadata"]["numeric"] == ["speed"]


def test_a_file_that_names_a_sample_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text("key,site\nb.jpg,depot\nc.jpg,yard\nb.jpg,harbour\n")
    keys = ["b.jpg", "c.jpg"]
    listing = write_listing(str(tmp_path), [ObjectInfo(k, 1, "v") for k in keys], tmp_path / "listing")
    config = SelectionConfig(metadata_file="meta.csv")
    with pytest.raises(
        ValueError, match=r"selection.metadata_file: 'meta.csv' names samples more than once: \['b.jpg'\]"
    ):
        prepare_selection_inputs(config, str(tmp_path), None, listing, 32, ChecksConfig(), tmp_path / "in")
