"""Near duplicates on embeddings: one member of each group is kept, the datapool's first."""

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows.curate import curate
from tasks.records.segments import tombstones
from tasks.selection.distances import BLOCK
from tasks.selection.near_duplicates import find_near_duplicates, near_duplicates_given, pool_match
from tasks.selection.pool_index import INDEX_FROM_ROWS, build_segment_index
from tests.images import jpeg_bytes, write_scene_crops
from tests.manifests import image_rows
from tests.test_curate_flow import TINY_TRAINING


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_each_group_keeps_exactly_one_member_across_blocks() -> None:
    rng = np.random.default_rng(0)
    centers = unit(rng.normal(size=(BLOCK + 50, 32)))
    group = rng.integers(0, len(centers), size=3 * len(centers))  # many groups span blocks
    x = unit(centers[group] + 1e-3 * rng.normal(size=(len(group), 32)))
    ids = [f"{i:05d}" for i in range(len(x))]
    removed = find_near_duplicates(ids, x, 0.01, [], np.empty((0, 32), np.float32))
    kept = [i for i in ids if i not in removed]
    assert sorted({int(group[int(i)]) for i in kept}) == sorted(set(group.tolist()))
    assert len(kept) == len(set(group.tolist()))  # exactly one a group
    for sample_id, (original, distance) in removed.items():
        assert original not in removed and original < sample_id
        assert group[int(original)] == group[int(sample_id)] and distance < 0.01


def test_the_datapool_samples_are_the_representatives() -> None:
    rng = np.random.default_rng(1)
    earlier = unit(rng.normal(size=(4, 8)))
    x = unit(np.concatenate([earlier[:2] + 1e-4, rng.normal(size=(3, 8))]))
    removed = find_near_duplicates(["n0", "n1", "n2", "n3", "n4"], x, 0.01, ["p0", "p1", "p2", "p3"], earlier)
    assert {k: v[0] for k, v in removed.items()} == {"n0": "p0", "n1": "p1"}


def test_a_run_marks_reencoded_copies_as_near_duplicates(prefect_server: None, tmp_path: Path) -> None:
    source = tmp_path / "photos"
    keys = write_scene_crops(source, per_scene=1)  # six different photographs
    for key in keys[:3]:
        (source / "copies").mkdir(exist_ok=True)
        (source / "copies" / key.replace("/", "-")).write_bytes(
            jpeg_bytes(Image.open(source / key), quality=90)
        )
    record = curate(
        source=str(source),
        output=str(tmp_path / "out"),
        n_samples=100,
        # Trained long enough that distinct photographs are far apart; copies stay close.
        training=TINY_TRAINING.model_copy(update={"epochs": 15, "width": 16, "embedding_dim": 32}),
        checks={"near_duplicate_distance": 0.01},
    )
    folder = Path(record["output"]) / "runs" / record["run_id"]
    duplicates = json.loads((folder / "duplicates.json").read_text())
    copies = {f"copies/{k.replace('/', '-')}": k for k in keys[:3]}
    # Each copy sorts after its original, so the original is the one kept.
    assert {k: v["of"] for k, v in duplicates.items()} == copies
    assert all("near duplicate of" in v["reason"] for v in duplicates.values())
    selected = set((folder / "selected_filenames.txt").read_text().splitlines())
    assert not selected & set(duplicates)
    assert record["counts"]["duplicates"] == 3 and record["counts"]["embedded"] == len(keys)


def all_pairs_reference(
    ids: list[str], x: np.ndarray, threshold: float, earlier_ids: list[str], earlier: np.ndarray
) -> dict[str, tuple[str, float]]:
    """The rule written the plain way, every pair at once: a row is removed as a duplicate of
    its nearest kept row within `threshold` (the lowest index on a tie)."""
    everything = np.concatenate([earlier, x]).astype(np.float32)
    names, kept = earlier_ids + ids, [True] * len(earlier_ids) + [False] * len(ids)
    removed = {}
    for i in range(len(earlier_ids), len(names)):
        distance = 1.0 - (everything[:i] @ everything[i]).astype(np.float64)
        close = [(distance[j], j) for j in range(i) if kept[j] and distance[j] < threshold]
        if close:
            nearest, j = min(close)
            removed[names[i]] = (names[j], float(nearest))
        else:
            kept[i] = True
    return removed


def test_tiles_give_what_comparing_every_pair_gives() -> None:
    rng = np.random.default_rng(2)
    centers = unit(rng.normal(size=(300, 16)))
    pool = unit(centers[:150] + 2e-3 * rng.normal(size=(150, 16)))
    group = rng.integers(0, len(centers), size=BLOCK + 700)  # this run spans two tiles
    x = unit(centers[group] + 2e-3 * rng.normal(size=(len(group), 16)))
    ids, pool_ids = [f"n{i:05d}" for i in range(len(x))], [f"p{i:03d}" for i in range(len(pool))]
    tiled = find_near_duplicates(ids, x, 0.002, pool_ids, pool)
    reference = all_pairs_reference(ids, x, 0.002, pool_ids, pool)
    assert {k: v[0] for k, v in tiled.items()} == {k: v[0] for k, v in reference.items()}
    originals = {original[0] for original, _ in tiled.values()}
    assert originals == {"p", "n"}  # duplicates of the pool's samples and of this run's
    for sample_id, (_, distance) in tiled.items():
        assert distance == pytest.approx(reference[sample_id][1], abs=1e-6)


def test_thousands_of_near_identical_rows_need_memory_for_the_rows_not_the_pairs() -> None:
    """6,000 frames of a static camera: 18 million close pairs, which the pairwise lists
    held (3 GB); one best match a row needs a few tiles."""
    rng = np.random.default_rng(3)
    x = unit(np.ones((6000, 16)) + 1e-4 * rng.normal(size=(6000, 16)))
    tracemalloc.start()
    removed = find_near_duplicates([f"{i:05d}" for i in range(len(x))], x, 0.01, [], np.empty((0, 16)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(removed) == len(x) - 1 and {v[0] for v in removed.values()} == {"00000"}
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_the_pool_in_segments_is_matched_as_its_live_rows_are(tmp_path: Path) -> None:
    """A sample whose key a later segment replaced or removed is no representative any more."""
    rng = np.random.default_rng(4)
    pool = unit(rng.normal(size=(6, 8)))
    base = image_rows([f"p{i}" for i in range(6)], pool, False, "r")
    # The next run re-processed p1 (a new embedding, far away) and found p2 gone.
    moved = unit(rng.normal(size=(1, 8)))
    changes = pa.concat_tables([tombstones(pa.array(["p1", "p2"])), image_rows(["p1"], moved, False, "r")])
    segments = [tmp_path / "0.parquet", tmp_path / "1.parquet"]
    pq.write_table(base, segments[0])
    pq.write_table(changes, segments[1])
    x = unit(np.concatenate([pool[:4] + 1e-4, rng.normal(size=(2, 8))]))
    ids = [f"n{i}" for i in range(len(x))]
    match = pool_match(x, [str(s) for s in segments])
    removed = near_duplicates_given(ids, x, 0.01, match)
    live_ids = ["p0", "p3", "p4", "p5", "p1"]
    live = np.concatenate([pool[[0, 3, 4, 5]], moved])
    assert removed == find_near_duplicates(ids, x, 0.01, live_ids, live)
    assert {k: v[0] for k, v in removed.items()} == {"n0": "p0", "n3": "p3"}


def test_a_segment_s_index_finds_the_near_duplicates_an_exact_search_finds(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(50, 16))
    pool = unit(
        centres[rng.integers(0, 50, INDEX_FROM_ROWS + 5000)]
        + 0.5 * rng.normal(size=(INDEX_FROM_ROWS + 5000, 16))
    )
    pool_ids = [f"p{i:06d}" for i in range(len(pool))]
    copied = rng.choice(len(pool), 300, replace=False)
    # A later run re-processed a third of the copied originals: they no longer count.
    gone = [pool_ids[i] for i in copied[:100]]
    segments = [str(tmp_path / "base.parquet"), str(tmp_path / "later.parquet")]
    pq.write_table(image_rows(pool_ids, pool, False, "r"), segments[0])
    pq.write_table(tombstones(pa.array(gone)), segments[1])
    index = tmp_path / "base.faiss"
    assert build_segment_index(segments[0], index)
    x = unit(np.concatenate([pool[copied] + 1e-3 * rng.normal(size=(300, 16)), rng.normal(size=(300, 16))]))
    ids = [f"n{i:04d}" for i in range(len(x))]
    exact = near_duplicates_given(ids, x, 0.01, pool_match(x, segments))
    indexed = near_duplicates_given(ids, x, 0.01, pool_match(x, segments, [str(index), None]))
    assert {k: v[0] for k, v in indexed.items()} == {k: v[0] for k, v in exact.items()}
    assert {ids[i] for i in range(100, 300)} <= set(indexed)  # the copies of originals still there
    assert not {v[0] for v in indexed.values()} & set(gone)
    for sample_id, (_, distance) in indexed.items():
        assert distance == pytest.approx(exact[sample_id][1], abs=1e-3)  # fp16 storage
