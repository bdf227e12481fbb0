"""The selection-quality benchmark's parts on cases whose answers are known: the label
metrics, the peer selectors on separated blobs, and the labelled image sets on disk."""

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.quality_peers import (
    facility_location,
    fasterpam,
    knn_accuracy,
    one_nn_accuracy,
    random_picks,
    typiclust,
)
from benchmarks.quality_sets import PHOTOS, SETS, raw_pixels, write_digits, write_photo_crops

BLOBS = 5
PER_BLOB = 20


def blobs(count: int = BLOBS, per_blob: int = PER_BLOB, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tight equal blobs around orthogonal unit vectors, L2-normalised; labels 'b0', 'b1', ..."""
    rng = np.random.default_rng(seed)
    centres = np.repeat(np.eye(count, 16, dtype=np.float32), per_blob, axis=0)
    x = centres + rng.normal(scale=0.02, size=centres.shape).astype(np.float32)
    labels = np.repeat([f"b{blob}" for blob in range(count)], per_blob)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def line(*positions: float) -> np.ndarray:
    return np.array([[position, 0.0] for position in positions], dtype=np.float32)


def test_one_nn_accuracy_is_one_with_a_pick_per_blob_and_loses_the_blob_without() -> None:
    x, labels = blobs(count=3, per_blob=10)
    assert one_nn_accuracy(x, labels, np.array([0, 10, 20])) == 1.0
    # Blob 2 has no pick: its 10 rows are wrong, the other 18 unselected rows right.
    assert one_nn_accuracy(x, labels, np.array([0, 10])) == pytest.approx(18 / 28)


def test_one_nn_accuracy_takes_the_nearest_pick() -> None:
    labels = np.array(["a", "b", "a", "b"])
    # Picks: row 0 (a, at 0) and row 1 (b, at 4). Each other row sits nearer the pick of its
    # own label, then, swapped, nearer the pick of the other label.
    assert one_nn_accuracy(line(0, 4, 1, 3), labels, np.array([0, 1])) == 1.0
    assert one_nn_accuracy(line(0, 4, 3, 1), labels, np.array([0, 1])) == 0.0


def test_knn_accuracy_is_one_on_separated_blobs() -> None:
    x, labels = blobs()
    assert knn_accuracy(x, labels, k=5) == 1.0


def test_knn_accuracy_outvotes_a_small_blob() -> None:
    # Two rows of b beside ten of a: each b row has one b and four a among its five nearest.
    x, labels = blobs(count=2, per_blob=10)
    x = np.concatenate([x[:10], x[10:12]])
    assert knn_accuracy(x, labels[:12], k=5) == pytest.approx(10 / 12)


@pytest.mark.parametrize("block", [1, 2, 1024])
def test_knn_accuracy_breaks_ties_to_the_nearest_label_in_any_block(block: int) -> None:
    # k=2. Rows 0, 2 and 3 each hear one a and one b and take the nearest: b (wrong), a, a;
    # row 1 (b) hears a twice. Right: rows 2 and 3 (alphabetical ties would make it 0.75).
    x, labels = line(0, 1, 3, 3.5), np.array(["a", "b", "a", "a"])
    assert knn_accuracy(x, labels, k=2, block=block) == 0.5


PEERS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "facility_location": facility_location,
    "fasterpam": fasterpam,
    "typiclust": typiclust,
}


@pytest.mark.parametrize("name", PEERS)
def test_peer_picks_one_row_per_blob(name: str) -> None:
    x, labels = blobs()
    picks = PEERS[name](x, BLOBS, 0)
    assert picks.dtype == np.int64
    assert len(picks) == BLOBS
    assert sorted(labels[picks]) == [f"b{blob}" for blob in range(BLOBS)]


@pytest.mark.parametrize("name", PEERS)
def test_peer_picks_distinct_rows_in_range(name: str) -> None:
    x, _ = blobs()
    picks = PEERS[name](x, 12, 1)
    assert len(picks) == 12
    assert len(set(picks.tolist())) == 12
    assert picks.min() >= 0 and picks.max() < len(x)


def test_typiclust_takes_the_densest_row_of_a_cluster() -> None:
    # One cluster: the middle of evenly spaced rows has the nearest neighbours.
    assert typiclust(line(0, 1, 2, 3, 4), 1, 0).tolist() == [2]


def test_random_picks_are_distinct_seeded_and_in_range() -> None:
    picks = random_picks(100, 30, seed=3)
    assert picks.dtype == np.int64
    assert len(set(picks.tolist())) == 30
    assert picks.min() >= 0 and picks.max() < 100
    assert np.array_equal(picks, random_picks(100, 30, seed=3))


def test_digits_are_flat_32px_rgb_files_with_ten_labels(tmp_path: Path) -> None:
    labels = write_digits(tmp_path)
    assert len(labels) == 1797
    assert len(set(labels.values())) == 10
    assert all("/" not in key and (tmp_path / key).is_file() for key in labels)
    with Image.open(tmp_path / "digit_0000.png") as image:
        assert (image.mode, image.size) == ("RGB", (32, 32))
    assert labels["digit_0000.png"] == "0"


def test_photo_crops_share_photos_evenly_and_keep_labels_out_of_paths(tmp_path: Path) -> None:
    labels = write_photo_crops(tmp_path, crops=2 * len(PHOTOS) + 3, seed=1)
    assert len(PHOTOS) == 20
    assert sorted(Counter(labels.values()).values()) == [2] * (len(PHOTOS) - 3) + [3] * 3
    assert all(key.startswith("crop_") and (tmp_path / key).is_file() for key in labels)
    with Image.open(tmp_path / next(iter(labels))) as image:
        assert (image.mode, image.size) == ("RGB", (64, 64))


def test_raw_pixels_are_centred_unit_rows(tmp_path: Path) -> None:
    labels = SETS["photo_crops"](tmp_path)
    x = raw_pixels(tmp_path, list(labels), size=8)
    assert x.dtype == np.float32
    assert x.shape == (300, 8 * 8 * 3)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
