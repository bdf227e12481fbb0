"""Select: the configured strategies over this run's clean samples, measured against
random subsets.

The default, REPRESENTATIVE, is k-medoids (tasks/representative.py). DIVERSITY alone is
greedy k-center (Gonzalez, 1985), the Lightly Worker's behaviour: each pick is the sample
farthest from everything chosen so far. Distances to the newest center are one
matrix-vector product with precomputed squared norms (|x - c|^2 = |x|^2 - 2 x.c + |c|^2),
and a running minimum keeps every sample's distance to its nearest center: O(N d) a pick,
memory-bound. Other mixes run as one combined greedy pass (tasks/strategies.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from prefect import task
from pydantic import BaseModel

from tasks.config import (
    BUILTIN_METADATA_KEYS,
    CATEGORICAL_METADATA_KEYS,
    SelectionConfig,
    SelectionStrategy,
)
from tasks.distances import mean_knn_distance, squared_distance_to_set
from tasks.embedding_table import EmbeddingTable, read_embeddings
from tasks.inspect import KIND_FRAME, SampleTable
from tasks.kcenter_torch import kcenter_greedy_torch
from tasks.manifest import manifest_vectors
from tasks.plan import RunPlan
from tasks.quality import selection_quality
from tasks.representative import RepresentativePicks, representative_picks
from tasks.selection_inputs import SelectionInputs, values_for
from tasks.sequences import frame_windows, window_embeddings
from tasks.strategies import (
    Balance,
    Diversity,
    Objective,
    Score,
    Threshold,
    Weights,
    combined_greedy,
    passing,
)

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
    # Diversity, representativeness, coverage and balance of the picks, and their mean and
    # std over random subsets of the same size.
    quality: dict[str, object]
    device: str  # where the picks were computed: cpu (numpy, kmedoids) or cuda (torch k-center)


def earlier_picks(run_plan: RunPlan, ids: list[str], embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the samples earlier runs selected (from the datapool's manifest, or
    from this run's table where this run reprocessed them), and a mask of this run's rows
    that are such samples. Shape: ids (N,), embeddings (N, D) -> (M, D), (N,)"""
    earlier = set(run_plan.previously_selected)
    reprocessed = np.array([i in earlier for i in ids], dtype=bool)
    _, kept = manifest_vectors(pq.read_table(run_plan.kept_manifest), earlier)
    return np.concatenate([kept.reshape(-1, embeddings.shape[1]), embeddings[reprocessed]]), reprocessed


class SampleMetadata:
    """The METADATA values of the candidates, a key at a time: built-in columns, `folder`,
    metadata_from_key's groups and metadata_file's columns."""

    def __init__(
        self, samples: SampleTable, ids: list[str], config: SelectionConfig, inputs: SelectionInputs
    ) -> None:
        numeric = sorted(BUILTIN_METADATA_KEYS - CATEGORICAL_METADATA_KEYS)
        table = pq.read_table(samples.path, columns=["id", "key", *numeric])
        row = {sample_id: position for position, sample_id in enumerate(table["id"].to_pylist())}
        self.rows = pa.array([row[i] for i in ids], pa.int64())
        self.table, self.ids, self.config, self.inputs = table, ids, config, inputs
        self.keys: list[str] = table["key"].take(self.rows).to_pylist()

    def values(self, key: str) -> np.ndarray:
        """Shape: -> (N,) float64 (NaN: no value) or str ('': no value)"""
        if key == "folder":
            return np.array([k.split("/")[0] if "/" in k else "" for k in self.keys])
        if key in self.config.key_groups and self.config.metadata_from_key is not None:
            pattern = re.compile(self.config.metadata_from_key)
            matches = [pattern.search(k) for k in self.keys]
            return np.array([(m.group(key) or "") if m else "" for m in matches])
        if key in BUILTIN_METADATA_KEYS:
            column = self.table[key].take(self.rows).cast(pa.float64())
            return np.asarray(column.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
        if self.inputs.metadata is None:
            raise ValueError(f"METADATA key {key!r} has no source")  # refused by the config checks
        return values_for(self.inputs.metadata, key, self.ids, self.keys)


def similarity_to(query: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Each sample's largest cosine similarity to the query embeddings.
    Shape: query (Q, D), embeddings (N, D) -> (N,)"""
    return np.asarray((embeddings @ query.T).max(axis=1))


def query_embeddings(
    rule: SelectionStrategy, index: int, ids: list[str], embeddings: np.ndarray, inputs: SelectionInputs
) -> np.ndarray:
    """The SIMILARITY query: the embeddings of its sample ids and of its image files.
    Shape: -> (Q, D)

    Raises:
        ValueError: a query id is not among this run's clean samples.
    """
    query = rule.strategy.query or ()
    position = {sample_id: row for row, sample_id in enumerate(ids)}
    unknown = [q for q in query if q not in position]
    if unknown:
        raise ValueError(
            f"selection.strategies.{index}.strategy.query: {unknown} are not clean samples of this run"
        )
    parts = [embeddings[[position[q] for q in query]]]
    if index in inputs.query_embeddings:
        parts.append(np.load(inputs.query_embeddings[index]))
    return np.concatenate(parts)


def strategy_terms(
    config: SelectionConfig,
    samples: SampleTable,
    ids: list[str],
    embeddings: np.ndarray,
    inputs: SelectionInputs,
) -> tuple[list[Threshold], list[Objective], dict[str, np.ndarray]]:
    """The thresholds, the objectives, and the categories of each BALANCE key."""
    metadata = SampleMetadata(samples, ids, config, inputs)
    thresholds: list[Threshold] = []
    objectives: list[Objective] = []
    balanced: dict[str, np.ndarray] = {}
    for index, rule in enumerate(config.strategies):
        source, strategy = rule.input, rule.strategy
        if source.type == "RANDOM":
            values = np.random.default_rng(source.random_seed).random(len(ids))
        elif source.type == "METADATA" and source.key is not None:
            values = metadata.values(source.key)
        elif source.type == "SCORES" and source.score is not None:
            values = values_for(inputs.scores[index], source.score, ids, metadata.keys)
        if strategy.type == "DIVERSITY":
            objectives.append(Diversity(strategy.strength, config.min_distance))
        elif strategy.type == "TYPICALITY":
            # Dense neighbourhoods are typical: the closer the k nearest, the higher.
            typical = 1.0 / (1.0 + mean_knn_distance(embeddings, strategy.neighbours, seed=config.seed))
            objectives.append(Score(typical, strategy.strength))
        elif strategy.type == "SIMILARITY":
            query = query_embeddings(rule, index, ids, embeddings, inputs)
            objectives.append(Score(similarity_to(query, embeddings), strategy.strength))
        elif strategy.type == "THRESHOLD" and strategy.operation is not None and strategy.value is not None:
            thresholds.append(Threshold(values, strategy.operation, strategy.value))
        elif strategy.type == "WEIGHTS":
            objectives.append(Weights(values, strategy.strength))
        elif strategy.type == "BALANCE" and source.key is not None:
            balanced[source.key] = values.astype(str)
            objectives.append(Balance(balanced[source.key], strategy.target, strategy.strength))
    return thresholds, objectives, balanced


def kcenter_device(config: SelectionConfig) -> str:
    """'cuda' where greedy k-center runs in torch on the GPU, else 'cpu' (numpy)."""
    usable = torch.cuda.is_available()
    if config.device == "cuda" and not usable:
        logger.warning("selection.device is cuda but torch finds no usable GPU: selecting on the CPU")
    return "cuda" if config.device in ("auto", "cuda") and usable else "cpu"


def diversity_reasons(distances: np.ndarray) -> list[str]:
    return [
        "diversity: first pick (seeded)"
        if np.isinf(d)
        else f"diversity: distance {d:.4f} to the nearest pick before it (this run's or earlier runs')"
        for d in distances
    ]


def representative_reasons(result: RepresentativePicks) -> list[str]:
    return [
        f"representative: nearest pick of {count} samples (mean distance {distance:.4f})"
        for count, distance in zip(result.represented, result.mean_distance, strict=True)
    ]


def diverse_picks(
    embeddings: np.ndarray, n: int, config: SelectionConfig, chosen: np.ndarray, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center: numpy on the CPU, torch on a GPU (`device` 'cuda')."""
    if device == "cuda":
        return kcenter_greedy_torch(embeddings, n, config.seed, device, config.min_distance, chosen)
    return kcenter_greedy(embeddings, n, config.seed, config.min_distance, chosen)


def alone_picks(
    embeddings: np.ndarray, n: int, config: SelectionConfig, chosen: np.ndarray
) -> tuple[np.ndarray, list[str], str]:
    """REPRESENTATIVE or DIVERSITY on its own (or over windows): picks, a reason each, and
    the device that computed them."""
    if config.representative:
        result = representative_picks(embeddings, n, config.seed, chosen)
        return result.picks, representative_reasons(result), "cpu"
    device = kcenter_device(config)
    picks, distances = diverse_picks(embeddings, n, config, chosen, device)
    return picks, diversity_reasons(distances), device


def frames_of(samples: SampleTable) -> dict[str, tuple[str, int]]:
    """{frame id: (video key, frame index)} of the run's video frames."""
    rows = pq.read_table(samples.path, columns=["id", "key", "kind", "frame_index"]).to_pylist()
    return {r["id"]: (r["key"], r["frame_index"]) for r in rows if r["kind"] == KIND_FRAME}


def select_sequences(
    ids: list[str],
    embeddings: np.ndarray,
    frames: dict[str, tuple[str, int]],
    requested: int,
    length: int,
    config: SelectionConfig,
    chosen: np.ndarray,
) -> tuple[np.ndarray, list[str], int, str]:
    """REPRESENTATIVE or DIVERSITY over windows of `length` consecutive frames: `requested`
    counts frames, so requested // length windows (at least one) are picked, every frame of
    each. Returns (picked rows of `ids`, a reason each, how many frames were candidates, the
    device)."""
    windows = frame_windows(ids, frames, length)
    wanted = max(1, requested // length)
    picked, window_reasons, device = alone_picks(
        window_embeddings(embeddings, windows), wanted, config, chosen
    )
    reasons = [
        f"sequence {rank} ({length} frames), {reason}"
        for rank, reason in enumerate(window_reasons)
        for _ in range(length)
    ]
    return windows[picked].reshape(-1), reasons, windows.size, device


def select_from_pool(
    table: EmbeddingTable,
    requested: int,
    config: SelectionConfig,
    sequence_length: int | None,
    run_plan: RunPlan,
    samples: SampleTable,
    inputs: SelectionInputs,
    path: Path,
) -> Selection:
    """Select from this run's clean samples (or windows of `sequence_length` frames),
    diverse also against what earlier runs selected; write (id, rank, reason) to `path`."""
    ids, embeddings = read_embeddings(table)
    chosen, reprocessed = earlier_picks(run_plan, ids, embeddings)
    ids, embeddings = [i for i, r in zip(ids, reprocessed, strict=True) if not r], embeddings[~reprocessed]
    candidates = len(ids)
    balanced: dict[str, np.ndarray] = {}
    allowed = np.ones(candidates, dtype=bool)
    device = "cpu"
    if sequence_length is not None:
        picks, reasons, candidates, device = select_sequences(
            ids, embeddings, frames_of(samples), requested, sequence_length, config, chosen
        )
    elif config.alone:  # the default: no metadata to read, nothing to combine
        picks, reasons, device = alone_picks(embeddings, requested, config, chosen)
    else:
        thresholds, objectives, balanced = strategy_terms(config, samples, ids, embeddings, inputs)
        allowed = passing(thresholds, len(ids))
        if config.representative:
            rows = np.flatnonzero(allowed)
            picked, reasons, device = alone_picks(embeddings[rows], requested, config, chosen)
            picks = rows[picked]
        else:
            picks, reasons = combined_greedy(
                requested, thresholds, objectives, embeddings, chosen, config.seed
            )
    note = None
    if requested > candidates:
        pool = "whole sequences hold" if sequence_length is not None else "the clean pool holds"
        note = f"asked for {requested} samples but {pool} {candidates}: selected all of them"
        logger.warning(note)
    elif len(picks) < requested:
        note = (
            f"stopped at {len(picks)} of {requested} samples: the others fail a threshold or are "
            f"closer than min_distance {config.min_distance} to a pick"
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
        candidates=candidates,
        note=note,
        quality=selection_quality(embeddings, picks, config.seed, balanced, allowed, chosen),
        device=device,
    )


def selected_ids(selection: Selection) -> list[str]:
    """The picked ids, in pick order."""
    return list(pq.read_table(selection.path, columns=["id"])["id"].to_pylist())


@task(name="select")
def select(
    table: EmbeddingTable,
    requested: int,
    config: SelectionConfig,
    sequence_length: int | None,
    run_plan: RunPlan,
    samples: SampleTable,
    inputs: SelectionInputs,
    work_dir: Path,
) -> Selection:
    return select_from_pool(
        table, requested, config, sequence_length, run_plan, samples, inputs, work_dir / SELECTION_FILE
    )
