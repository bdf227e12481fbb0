"""A file with an odd name, or one that cannot be read, never stops a run: it is read when
it can be, and recorded with its reason when it cannot."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flows.curate import curate
from tasks.config import ChecksConfig, VideoConfig
from tasks.media.inspection import inspect_shard_files
from tasks.publish.files import copy_selected_images
from tasks.storage.local import LocalStorage
from tests.images import write_scene_crops

TINY_TRAINING = {"backbone": "resnet10", "width": 8, "input_size": 32, "embedding_dim": 16, "epochs": 1}
LATIN_1_NAME = b"caf\xe9.jpg"  # not UTF-8: the name a Windows share or an old camera may write


@pytest.fixture
def odd_source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write_scene_crops(root, per_scene=1)
    photo = (root / "coffee" / "00.jpg").read_bytes()
    rocket = (root / "rocket" / "00.jpg").read_bytes()
    (root / "back\\slash.jpg").write_bytes(rocket)
    with open(os.path.join(os.fsencode(root), LATIN_1_NAME), "wb") as handle:
        handle.write(photo)  # the same picture under another name
    return root


def test_odd_but_legal_names_are_curated_and_the_next_run_finds_nothing_new(
    prefect_server: None, odd_source: Path, tmp_path: Path
) -> None:
    options: dict[str, Any] = {
        "source": str(odd_source),
        "output": str(tmp_path / "out"),
        "n_samples": 3,
        "training": TINY_TRAINING,
    }
    first = curate(**options)
    rows = pq.read_table(Path(first["artifacts"]["samples.parquet"])).to_pylist()
    by_id = {row["id"]: row for row in rows}
    assert by_id["back\\slash.jpg"]["status"] == "ok"
    # Read: the same bytes as coffee/00.jpg, which is marked its duplicate (the later in id order).
    assert by_id["caf\\xe9.jpg"]["status"] == "ok"
    assert by_id["coffee/00.jpg"]["duplicate_of"] == "caf\\xe9.jpg"
    assert first["counts"]["unreadable"] == 0
    second = curate(**options)
    assert (second["counts"]["new"], second["counts"]["selected"]) == (0, 0)


def test_files_that_vanish_or_cannot_be_read_are_recorded_and_the_rest_inspected(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write_scene_crops(root, per_scene=2)
    storage = LocalStorage(root)
    objects = list(storage.list_objects())
    # After listing: one file becomes a folder (it cannot be read), one is deleted.
    (root / "coffee" / "00.jpg").unlink()
    (root / "coffee" / "00.jpg").mkdir()
    (root / "rocket" / "01.jpg").unlink()

    directory = tmp_path / "inspected"
    directory.mkdir()
    ok, _ = inspect_shard_files(objects, 0, storage, 32, ChecksConfig(), VideoConfig(), directory)
    rows = {row["id"]: row for row in pq.read_table(directory / "samples.parquet").to_pylist()}
    assert rows["coffee/00.jpg"]["status"] == "unreadable"
    assert rows["coffee/00.jpg"]["reason"] == f"{root}/coffee/00.jpg cannot be read: Is a directory"
    assert rows["rocket/01.jpg"]["status"] == "missing"
    assert ok == len(objects) - 2
    assert all(
        row["status"] == "ok" for key, row in rows.items() if key not in ("coffee/00.jpg", "rocket/01.jpg")
    )


def test_a_selected_image_deleted_before_it_is_copied_is_reported_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "src"
    keys = write_scene_crops(root, per_scene=1)[:3]
    (root / keys[1]).unlink()
    output = LocalStorage(tmp_path / "out")
    not_copied = copy_selected_images(LocalStorage(root), output, keys)
    assert list(not_copied) == [keys[1]] and "does not exist" in not_copied[keys[1]]
    copied = sorted(
        p.relative_to(tmp_path / "out" / "selected").as_posix() for p in (tmp_path / "out").rglob("*.jpg")
    )
    assert copied == [keys[0], keys[2]]


def read_selected_filenames(text: str) -> list[str]:
    """The README's rule: a line that starts with a double quote is a JSON string."""
    return [json.loads(line) if line.startswith('"') else line for line in text.split("\n")[:-1]]


def test_names_with_line_breaks_keep_one_id_a_line(prefect_server: None, tmp_path: Path) -> None:
    root = tmp_path / "src"
    keys = write_scene_crops(root, per_scene=1)
    odd = ["two\nlines.jpg", "carriage\rreturn.jpg", '"quoted".jpg']
    for name, key in zip(odd, keys, strict=False):
        (root / name).write_bytes((root / key).read_bytes()[:-2] + b"\xff\xd9")  # a distinct JPEG
    record = curate(
        source=str(root),
        output=str(tmp_path / "out"),
        n_samples=100,
        training=TINY_TRAINING,
        checks={"remove_exact_duplicates": False},
    )
    assert record["counts"]["selected"] == len(keys) + len(odd)  # everything, odd names included
    listed = read_selected_filenames(Path(record["artifacts"]["selected_filenames.txt"]).read_text())
    assert sorted(listed) == sorted(keys + odd)
    with Path(record["artifacts"]["embeddings.csv"]).open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert sorted(row[0] for row in rows[1:]) == sorted(keys + odd)
