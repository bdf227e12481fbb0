"""The datapool's nearest samples to a run's rows, and TYPICALITY's density over the pool and the run."""

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.config import SelectionConfig
from tasks.records.embeddings import write_embedding_table
from tasks.records.plan import RunPlan
from tasks.records.samples import SAMPLE_SCHEMA, SampleTable
from tasks.records.segments import tombstones
from tasks.records.selection import SelectionInputs
from tasks.records.shards import Listing
from tasks.selection.choose import select_from_pool
from tasks.selection.distances import BLOCK, mean_knn_distance
from tasks.selection.pool_index import INDEX_FROM_ROWS, build_segment_index
from tasks.selection.pool_neighbours import pool_neighbours
from tests.manifests import image_rows


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(
    x: np.ndarray, ids: list[str], vectors: np.ndarray, k: int
) -> tuple[list[list[str]], np.ndarray]:
    """Each row's k most similar of `vectors` by one full product: the reference."""
    similarity = x @ vectors.T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return [[ids[j] for j in row] for row in order], np.take_along_axis(similarity, order, 1)


def two_segments(tmp_path: Path, rows: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """A base of clustered rows and a later run's segment that re-embeds a tenth of them and deletes a tenth.

    Returns the segments and the live pool (ids, vectors) they fold into.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, 16))
    pool = unit(centres[rng.integers(0, 40, rows)] + 0.4 * rng.normal(size=(rows, 16)))
    ids = [f"p{i:06d}" for i in range(rows)]
    changed, deleted = range(0, rows, 10), range(5, rows, 10)
    moved = unit(rng.normal(size=(len(changed), 16)))
    later = pa.concat_tables(
        [
            tombstones(pa.array([ids[i] for i in [*changed, *deleted]])),
            image_rows([ids[i] for i in changed], moved, False, "r2"),
        ]
    )
    segments = [str(tmp_path / "base.parquet"), str(tmp_path / "later.parquet")]
    pq.write_table(image_rows(ids, pool, False, "r1"), segments[0])
    pq.write_table(later, segments[1])
    untouched = [i for i in range(rows) if i % 10 not in (0, 5)]
    live_ids = [ids[i] for i in untouched] + [ids[i] for i in changed]
    return segments, live_ids, np.concatenate([pool[untouched], moved])


def test_the_pool_s_nearest_are_its_live_rows_nearest(tmp_path: Path) -> None:
    """Exact, across batches and tiles: the same ids and similarities as one full product."""
    segments, live_ids, live = two_segments(tmp_path, BLOCK * 3 + 77, seed=0)
    x = unit(np.random.default_rng(1).normal(size=(300, 16)))
    found = pool_neighbours(x, segments, None, 5)
    names, similarity = brute_force(x, live_ids, live, 5)
    assert found.names.tolist() == names
    np.testing.assert_allclose(found.similarity, similarity, atol=1e-5)


def test_a_segment_s_index_finds_nearly_all_of_the_exact_neighbours(tmp_path: Path) -> None:
    segments, live_ids, live = two_segments(tmp_path, INDEX_FROM_ROWS + 3000, seed=2)
    index = tmp_path / "base.faiss"
    assert build_segment_index(segments[0], index)
    x = unit(live[::97] + 0.05 * np.random.default_rng(3).normal(size=live[::97].shape))
    found = pool_neighbours(x, segments, [str(index)], 10)
    names, _ = brute_force(x, live_ids, live, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.names.tolist(), names, strict=True)])
    assert recall > 0.95, recall
    # Every neighbour is a live row, at its live embedding's similarity: neither a deleted row
    # nor the old embedding of a row a later run replaced.
    row_of = {name: at for at, name in enumerate(live_ids)}
    for query, (names, similarity) in enumerate(zip(found.names, found.similarity, strict=True)):
        for name, value in zip(names, similarity, strict=True):
            assert abs(value - x[query] @ live[row_of[name]]) < 1e-3  # fp16 storage
    exact_best, _ = brute_force(x, live_ids, live, 1)
    assert np.mean([f[0] == e[0] for f, e in zip(found.names.tolist(), exact_best, strict=True)]) > 0.97


def test_typicality_counts_the_pool_s_samples_as_neighbours(tmp_path: Path) -> None:
    """A new sample in a region the pool fills is typical, though the run has nothing near it."""
    segments, _, live = two_segments(tmp_path, 4000, seed=4)
    rng = np.random.default_rng(5)
    crowded = unit(live[:1] + 0.01 * rng.normal(size=(1, 16)))  # beside the pool's samples
    lonely = unit(rng.normal(size=(60, 16)))  # the run's own, scattered
    x = np.concatenate([crowded, lonely])
    pool = pool_neighbours(x, segments, None, 10)
    density = mean_knn_distance(x, 10, outside=pool.squared_distances())
    everything = np.concatenate([x, live])
    for row in range(len(x)):
        others = np.delete(everything, row, axis=0)
        reference = np.sort(np.linalg.norm(others - x[row], axis=1))[:10].mean()
        assert abs(density[row] - reference) < 1e-4
    alone = mean_knn_distance(x, 10)  # the run's rows only: the crowded one looks as lonely
    assert density[0] < np.median(density) and alone[0] > density[0] * 2


def select_typical(tmp_path: Path, pool: list[str], ids: list[str], x: np.ndarray) -> list[str]:
    """select_from_pool with TYPICALITY alone over this run's `ids` (vectors `x`), the datapool `pool`."""
    columns: dict[str, list[Any]] = {field.name: [None] * len(ids) for field in SAMPLE_SCHEMA}
    columns |= {"id": ids, "key": ids, "kind": ["image"] * len(ids), "status": ["ok"] * len(ids)}
    pq.write_table(pa.Table.from_pydict(columns, schema=SAMPLE_SCHEMA), tmp_path / "samples.parquet")
    samples = SampleTable(
        path=str(tmp_path / "samples.parquet"),
        processed=len(ids),
        ok=len(ids),
        corrupt=0,
        duplicates=0,
        missing=0,
    )
    pq.write_table(tombstones(pa.array([], pa.string())), tmp_path / "dropped.parquet")
    plan = RunPlan(
        listing=Listing(source=str(tmp_path), path=str(tmp_path / "listing.parquet"), count=len(ids)),
        shards=[],
        new=len(ids),
        pool=pool,
        dropped=str(tmp_path / "dropped.parquet"),
        kept=0,
        previously_selected=[],
    )
    config = SelectionConfig(
        strategies=[{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "TYPICALITY"}}]
    )
    table = write_embedding_table(ids, x, tmp_path / "embeddings.parquet")
    selection = select_from_pool(
        table, 3, config, None, plan, samples, SelectionInputs(), tmp_path / "sel.parquet"
    )
    return list(pq.read_table(selection.path)["id"].to_pylist())


def test_typicality_prefers_a_new_sample_the_pool_crowds_around(tmp_path: Path) -> None:
    """A new sample among many of the pool's is the most typical, though the run has nothing near it."""
    rng = np.random.default_rng(6)
    centre = unit(rng.normal(size=(1, 16)))
    crowd = unit(centre + 0.02 * rng.normal(size=(200, 16)))
    pq.write_table(
        image_rows([f"pool/{i:03d}.jpg" for i in range(200)], crowd, False, "r1"), tmp_path / "pool.parquet"
    )
    beside = unit(centre + 0.02 * rng.normal(size=(1, 16)))
    group = unit(unit(rng.normal(size=(1, 16))) + 0.15 * rng.normal(size=(30, 16)))  # near each other only
    ids = ["new/beside.jpg", *[f"new/group-{i:02d}.jpg" for i in range(30)]]
    x = np.concatenate([beside, group])
    assert select_typical(tmp_path, [str(tmp_path / "pool.parquet")], ids, x)[0] == "new/beside.jpg"
    # Without the pool, the same rows leave it out of the top 3: nothing of this run is near it.
    alone = select_typical(tmp_path, [], ids, x)
    assert "new/beside.jpg" not in alone
