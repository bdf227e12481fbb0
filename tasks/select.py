"""Select: greedy k-center (Gonzalez, 1985) on the L2-normalised embeddings.

Each pick is the sample farthest from everything chosen so far, so the selection covers
the embedding space. Distances to the newest center are one matrix-vector product with
precomputed squared norms (|x - c|^2 = |x|^2 - 2 x.c + |c|^2), and a running minimum
keeps every sample's distance to its nearest center: O(N d) a pick, memory-bound.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel

from tasks.config import BUILTIN_METADATA_KEYS, CATEGORICAL_METADATA_KEYS, DIVERSITY_ONLY, SelectionConfig
from tasks.distances import mean_knn_distance, squared_distance_to_set
from tasks.embedding_table import EmbeddingTable, read_embeddings
from tasks.inspect import SampleTable
from tasks.manifest import manifest_vectors
from tasks.plan import RunPlan
from tasks.quality import selection_quality
from tasks.strategies import Balance, Diversity, Objective, Threshold, Weights, combined_greedy

logger = logging.getLogger(__name__)

SELECTION_FILE = "selection.parquet"


def kcenter_greedy(
    embeddings: np.ndarray,
    n: int,
    seed: int,
    min_distance: float | None = None,
    chosen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to `n` rows of `embeddings` by greedy k-center.

    Without `chosen`, the first pick is a seeded random row. With `chosen` (embeddings
    selected before, e.g. by earlier runs), they are the initial centers: every pick is
    the row farthest from them and from the picks before it. Stops early when the
    farthest remaining row is closer than `min_distance` to the selection.

    Shape: embeddings (N, D) float32, chosen (M, D) -> indices (k,), distances (k,) where
    distances[i] is pick i's Euclidean distance to the centers before it (inf for a
    seeded first pick).
    """
    count = len(embeddings)
    n = min(n, count)
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    picks = np.empty(n, dtype=np.int64)
    distances = np.empty(n, dtype=np.float32)
    if chosen is not None and len(chosen):
        nearest = squared_distance_to_set(x, squared_norms, chosen)  # squared distance to nearest center
        pick = int(np.argmax(nearest))
        distance = np.sqrt(max(float(nearest[pick]), 0.0))
        if min_distance is not None and distance < min_distance:
            return picks[:0], distances[:0]
    else:
        nearest = np.full(count, np.inf, dtype=np.float32)
        pick, distance = int(np.random.default_rng(seed).integers(count)), np.float32(np.inf)
    for i in range(n):
        picks[i], distances[i] = pick, distance
        squared = squared_norms - 2.0 * (x @ x[pick]) + squared_norms[pick]
        np.minimum(nearest, squared, out=nearest)
        nearest[pick] = -1.0  # never picked again
        if i + 1 == n:
            break
        pick = int(np.argmax(nearest))
        distance = np.sqrt(max(float(nearest[pick]), 0.0))
        if min_distance is not None and distance < min_distance:
            return picks[: i + 1], distances[: i + 1]
    return picks, distances


class Selection(BaseModel, frozen=True):
    path: str
    requested: int
    selected: int
    candidates: int
    note: str | None
    # Diversity, coverage and balance of the picks and of a random subset of the same size.
    quality: dict[str, object]


def earlier_picks(run_plan: RunPlan, ids: list[str], embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the samples earlier runs selected (from the datapool's manifest, or
    from this run's table where this run reprocessed them), and a mask of this run's rows
    that are such samples. Shape: ids (N,), embeddings (N, D) -> (M, D), (N,)"""
    earlier = set(run_plan.previously_selected)
    reprocessed = np.array([i in earlier for i in ids], dtype=bool)
    _, kept = manifest_vectors(pq.read_table(run_plan.kept_manifest), earlier)
    return np.concatenate([kept.reshape(-1, embeddings.shape[1]), embeddings[reprocessed]]), reprocessed


def sample_metadata(samples: SampleTable, ids: list[str]) -> dict[str, np.ndarray]:
    """The built-in metadata of `ids`, a column each (`folder`: the key's first folder)."""
    columns = ["id", "key", *sorted(BUILTIN_METADATA_KEYS - CATEGORICAL_METADATA_KEYS)]
    rows = {r["id"]: r for r in pq.read_table(samples.path, columns=columns).to_pylist()}
    metadata = {
        name: np.array([np.nan if rows[i][name] is None else rows[i][name] for i in ids], dtype=np.float64)
        for name in columns[2:]
    }
    metadata["folder"] = np.array(
        [k.split("/")[0] if "/" in k else "" for k in (rows[i]["key"] for i in ids)]
    )
    return metadata


def similarity_to(query: tuple[str, ...], ids: list[str], embeddings: np.ndarray, index: int) -> np.ndarray:
    """Each sample's largest cosine similarity to the query samples. Shape: -> (N,)

    Raises:
        ValueError: a query id is not among this run's clean samples.
    """
    position = {sample_id: row for row, sample_id in enumerate(ids)}
    unknown = [q for q in query if q not in position]
    if unknown:
        raise ValueError(
            f"selection.strategies.{index}.strategy.query: {unknown} are not clean samples of this run"
        )
    return np.asarray((embeddings @ embeddings[[position[q] for q in query]].T).max(axis=1))


def strategy_terms(
    config: SelectionConfig, samples: SampleTable, ids: list[str], embeddings: np.ndarray
) -> tuple[list[Threshold], list[Objective]]:
    metadata = sample_metadata(samples, ids)
    thresholds: list[Threshold] = []
    objectives: list[Objective] = []
    for index, rule in enumerate(config.strategies):
        source, strategy = rule.input, rule.strategy
        if source.type == "RANDOM":
            values = np.random.default_rng(source.random_seed).random(len(ids))
        elif source.type == "METADATA" and source.key is not None:
            values = metadata[source.key]
        if strategy.type == "DIVERSITY":
            objectives.append(Diversity(strategy.strength, config.min_distance))
        elif strategy.type == "TYPICALITY":
            # Dense neighbourhoods are typical: the closer the k nearest, the higher.
            typical = 1.0 / (1.0 + mean_knn_distance(embeddings, strategy.neighbours))
            objectives.append(Weights(typical, strategy.strength))
        elif strategy.type == "SIMILARITY" and strategy.query:
            objectives.append(
                Weights(similarity_to(strategy.query, ids, embeddings, index), strategy.strength)
            )
        elif strategy.type == "THRESHOLD" and strategy.operation is not None and strategy.value is not None:
            thresholds.append(Threshold(values, strategy.operation, strategy.value))
        elif strategy.type == "WEIGHTS":
            objectives.append(Weights(values, strategy.strength))
        elif strategy.type == "BALANCE":
            objectives.append(Balance(values.astype(str), strategy.target, strategy.strength))
    return thresholds, objectives


def diversity_reasons(distances: np.ndarray) -> list[str]:
    return [
        "diversity: first pick (seeded)"
        if np.isinf(d)
        else f"diversity: distance {d:.4f} to the nearest pick before it (this run's or earlier runs')"
        for d in distances
    ]


def select_from_pool(
    table: EmbeddingTable,
    requested: int,
    config: SelectionConfig,
    run_plan: RunPlan,
    samples: SampleTable,
    path: Path,
) -> Selection:
    """Select from this run's clean samples, diverse also against what earlier runs
    selected; write (id, rank, reason) to `path`."""
    ids, embeddings = read_embeddings(table)
    chosen, reprocessed = earlier_picks(run_plan, ids, embeddings)
    ids, embeddings = [i for i, r in zip(ids, reprocessed, strict=True) if not r], embeddings[~reprocessed]
    if config.strategies == DIVERSITY_ONLY:
        picks, distances = kcenter_greedy(embeddings, requested, config.seed, config.min_distance, chosen)
        reasons = diversity_reasons(distances)
    else:
        thresholds, objectives = strategy_terms(config, samples, ids, embeddings)
        picks, reasons = combined_greedy(requested, thresholds, objectives, embeddings, chosen)
    note = None
    if requested > len(ids):
        note = f"asked for {requested} samples but the clean pool holds {len(ids)}: selected all of them"
        logger.warning(note)
    elif len(picks) < requested:
        note = (
            f"stopped at {len(picks)} of {requested} samples: the others fail a threshold or are "
            f"closer than min_distance {config.min_distance} to the selection"
        )
        logger.info(note)
    selection = pa.table(
        {
            "id": pa.array([ids[i] for i in picks], pa.string()),
            "rank": pa.array(np.arange(len(picks)), pa.int32()),
            "reason": pa.array(reasons, pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(selection, path)
    return Selection(
        path=str(path),
        requested=requested,
        selected=len(picks),
        candidates=len(ids),
        note=note,
        quality=selection_quality(embeddings, picks, config.seed),
    )


def selected_ids(selection: Selection) -> list[str]:
    """The picked ids, in pick order."""
    return list(pq.read_table(selection.path, columns=["id"])["id"].to_pylist())


@task(name="select")
def select(
    table: EmbeddingTable,
    requested: int,
    config: SelectionConfig,
    run_plan: RunPlan,
    samples: SampleTable,
    work_dir: Path,
) -> Selection:
    return select_from_pool(table, requested, config, run_plan, samples, work_dir / SELECTION_FILE)
