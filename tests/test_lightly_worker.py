"""Lightly Worker configurations, run as they are: the mapping, its errors, and whole runs that
write the Lightly layout, read back by the lightly package's own loader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from lightly.utils.io import load_embeddings

from flows.curate import curate
from tasks.config import RunConfig
from tasks.lightly_worker import LightlyConfigError, translate, with_overrides
from tests.images import write_bad_files, write_scene_crops
from tests.s3 import new_bucket, s3_admin_client, upload_folder
from tests.test_curate_flow import TINY_TRAINING

REPO = Path(__file__).resolve().parent.parent

# As the Lightly documentation's selection examples write them.
LIGHTLY_EXAMPLE: dict[str, Any] = {
    "worker_config": {
        "enable_corruptness_check": True,
        "remove_exact_duplicates": True,
        "enable_training": False,
        "relevant_filenames_file": ".lightly/relevant_filenames.txt",
        "datasource": {"process_all": True, "bypass_verify": False},
    },
    "selection_config": {
        "proportion_samples": 0.3,
        "strategies": [
            {
                "input": {"type": "METADATA", "key": "lightly.sharpness"},
                "strategy": {"type": "THRESHOLD", "threshold": 20, "operation": "BIGGER_EQUAL"},
            },
            {
                "input": {"type": "EMBEDDINGS"},
                "strategy": {
                    "type": "DIVERSITY",
                    "stopping_condition_minimum_distance": 0.2,
                    "strength": 0.6,
                },
            },
            {"input": {"type": "METADATA", "key": "folder"}, "strategy": {"type": "BALANCE"}},
        ],
    },
    "lightly_config": {
        "loader": {"batch_size": 16, "num_workers": -1},
        "model": {"name": "resnet-18", "out_dim": 128},
        "trainer": {"gpus": 1, "max_epochs": 100, "precision": 32},
        "criterion": {"temperature": 0.5},
        "collate": {"input_size": 64},
    },
}


def test_a_lightly_configuration_maps_onto_winnows_fields(tmp_path: Path) -> None:
    translation = translate(LIGHTLY_EXAMPLE | {"source": str(tmp_path)})
    config = RunConfig(**translation.fields)
    assert config.output_layout == "lightly"
    assert config.proportion == 0.3 and config.process_all
    assert config.checks.remove_exact_duplicates
    assert config.inputs.relevant_filenames == ".lightly/relevant_filenames.txt"
    threshold, diversity, balance = config.selection.strategies
    assert (threshold.input.key, threshold.strategy.operation, threshold.strategy.value) == (
        "sharpness",
        ">=",
        20,
    )
    assert (diversity.strategy.type, diversity.strategy.strength) == ("DIVERSITY", 0.6)
    assert config.selection.min_distance == 0.2
    assert balance.strategy.type == "BALANCE"
    training = config.training
    assert (training.epochs, training.batch_size, training.embedding_dim) == (100, 16, 128)
    assert (training.backbone, training.input_size, training.enabled) == ("resnet18", 64, True)
    # Accepted without a field of its own, and said so.
    assert any("enable_training" in note and "trains its own model" in note for note in translation.notes)
    assert any("loader.num_workers" in note for note in translation.notes)


def test_docker_style_arguments_override_the_file(tmp_path: Path) -> None:
    document = with_overrides(
        LIGHTLY_EXAMPLE,
        [
            "selection_config.n_samples=50",
            "selection_config.proportion_samples=null",
            "datasource.process_all=False",
            "worker_config.relevant_filenames_file=keep.txt",
            "remove_exact_duplicates=False",
            "lightly.trainer.max_epochs=10",
        ],
    )
    config = RunConfig(**translate(document | {"source": str(tmp_path)}).fields)
    assert (config.n_samples, config.proportion, config.process_all) == (50, None, False)
    assert config.inputs.relevant_filenames == "keep.txt"
    assert not config.checks.remove_exact_duplicates
    assert config.training.epochs == 10
    old_style = with_overrides({}, ["stopping_condition.n_samples=0.3"]) | {"source": str(tmp_path)}
    assert RunConfig(**translate(old_style).fields).proportion == 0.3


@pytest.mark.parametrize(
    ("document", "named", "instead"),
    [
        ({"worker_config": {"datasource": {"id": "6401d4534d"}}}, "worker_config.datasource.id", "--source"),
        ({"worker_config": {"token": "MY_TOKEN"}}, "worker_config.token", "leave it out"),
        (
            {
                "selection_config": {
                    "strategies": [{"input": {"type": "PREDICTIONS", "task": "t", "name": "x"}}]
                }
            },
            "selection_config.strategies.0.input.type",
            "metadata_file",
        ),
        (
            {"selection_config": {"strategies": [{"input": {"type": "SCORES", "task": "t", "score": "s"}}]}},
            "selection_config.strategies.0.input.task",
            "input.file",
        ),
        ({"worker_config": {"object_level": {"task_name": "t"}}}, "worker_config.object_level", "crop"),
        (
            {"worker_config": {"enable_corruptness_check": False}},
            "worker_config.enable_corruptness_check",
            "",
        ),
        ({"worker_config": {"upload_dataset": True}}, "worker_config.upload_dataset", "README"),
        (
            {"selection_config": {"strategies": [{"input": {"type": "METADATA", "key": "lightly.mean"}}]}},
            "selection_config.strategies.0.input.key",
            "lightly.sharpness",
        ),
        (
            {"selection_config": {"strategies": [{"strategy": {"type": "THRESHOLD", "operation": "ABOUT"}}]}},
            "selection_config.strategies.0.strategy.operation",
            "BIGGER_EQUAL",
        ),
    ],
)
def test_what_winnow_cannot_honour_fails_naming_the_key(
    document: dict[str, Any], named: str, instead: str
) -> None:
    with pytest.raises(LightlyConfigError) as raised:
        translate(document)
    assert str(raised.value).startswith(f"{named}: ")
    assert instead in str(raised.value)


def read_lightly_layout(folder: Path) -> dict[str, Any]:
    embeddings, labels, filenames = load_embeddings(str(folder / "data" / "embeddings.csv"))
    return {
        "embeddings": embeddings,
        "labels": labels,
        "filenames": filenames,
        "corrupt": (folder / "filenames" / "corrupt_filenames.txt").read_text().splitlines(),
        "duplicates": (folder / "filenames" / "duplicate_filenames.txt").read_text().splitlines(),
        "sampled": (folder / "sampled_filenames_excluding_datapool.txt").read_text().splitlines(),
        "report": json.loads((folder / "report.json").read_text()),
    }


def test_the_cli_runs_the_example_lightly_configuration_and_writes_the_lightly_layout(tmp_path: Path) -> None:
    """examples/lightly_worker.json, the README's worked example, as it is, with docker-style
    arguments that shrink the training for this machine."""
    good = write_scene_crops(tmp_path / "photos", per_scene=3)
    bad = write_bad_files(tmp_path / "photos")
    shutil.copyfile(tmp_path / "photos" / good[0], tmp_path / "photos" / "zz-copy.jpg")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "flows", "curate", "--source", str(tmp_path / "photos")]
    command += ["--output", str(tmp_path / "out"), "--config", str(REPO / "examples" / "lightly_worker.json")]
    # As docker run took them: the picks, and a training sized for two cores.
    lightly_arguments = [
        "selection_config.n_samples=5",
        "lightly.trainer.max_epochs=1",
        "lightly.model.out_dim=16",
        "lightly.collate.input_size=32",
    ]
    result = subprocess.run(
        [*command, "--quiet", *lightly_arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # What was accepted without a field of its own is said, not dropped.
    assert "note: worker_config.enable_training: False: winnow has no pretrained weights" in result.stderr
    latest = json.loads((tmp_path / "out" / "latest.json").read_text())
    record = json.loads(Path(latest["run_json"]).read_text())
    assert record["counts"]["selected"] == 5  # the argument beat the file
    assert record["config"]["output_layout"] == "lightly"
    layout = read_lightly_layout(Path(latest["run_json"]).parent / "lightly")
    ids = pq.read_table(Path(record["artifacts"]["embeddings.parquet"]), columns=["id"])["id"].to_pylist()
    assert layout["filenames"] == ids and len(ids) == len(good)
    assert layout["embeddings"].shape == (len(good), 16)
    assert np.allclose(np.linalg.norm(layout["embeddings"], axis=1), 1.0, atol=1e-4)
    assert set(layout["labels"]) == {0}
    assert sorted(layout["corrupt"]) == sorted(bad)
    assert layout["duplicates"] == ["zz-copy.jpg"]
    selected = Path(record["artifacts"]["selected_filenames.txt"]).read_text().splitlines()
    assert layout["sampled"] == selected and len(selected) == 5
    assert layout["report"]["n_samples_selected"] == 5
    assert layout["report"]["n_corrupt_samples"] == len(bad)


def test_a_lightly_configuration_runs_on_s3_and_the_layout_lands_in_the_bucket(
    s3_endpoint: str, aws_credentials: str, tmp_path: Path
) -> None:
    write_scene_crops(tmp_path / "raw", per_scene=2)
    bucket = new_bucket(s3_endpoint)
    upload_folder(s3_endpoint, tmp_path / "raw", bucket, "raw")
    document = LIGHTLY_EXAMPLE | {
        "worker_config": {"datasource": {"process_all": False}},
        "selection_config": {
            "n_samples": 3,
            "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}],
        },
        "lightly_config": {},
    }
    fields = translate(document).fields
    record = curate(
        source=f"s3://{bucket}/raw",
        output=f"s3://{bucket}/curated",
        aws_credentials=aws_credentials,
        cache_dir=str(tmp_path / "cache"),
        training=TINY_TRAINING,
        **{name: value for name, value in fields.items() if name != "training"},
    )
    client = s3_admin_client(s3_endpoint)
    folder = f"curated/runs/{record['run_id']}/lightly"
    local = tmp_path / "lightly"
    for name in (
        "data/embeddings.csv",
        "filenames/corrupt_filenames.txt",
        "filenames/duplicate_filenames.txt",
        "sampled_filenames_excluding_datapool.txt",
        "report.json",
    ):
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, f"{folder}/{name}", str(local / name))
    layout = read_lightly_layout(local)
    assert len(layout["sampled"]) == record["counts"]["selected"] == 3
    assert len(layout["filenames"]) == record["counts"]["embedded"]
    assert layout["corrupt"] == [] and layout["duplicates"] == []
    assert record["artifacts"]["lightly/report.json"] == f"s3://{bucket}/{folder}/report.json"
