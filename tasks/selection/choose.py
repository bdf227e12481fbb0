"""Select: the configured strategies over this run's clean samples.

The picks are measured against random subsets.

The default, REPRESENTATIVE, is k-medoids (tasks/selection/representative.py). DIVERSITY alone is
greedy k-center (Gonzalez, 1985), the Lightly Worker's behaviour: each pick is the sample
farthest from everything chosen so far. Distances to the newest center are one
matrix-vector product with precomputed squared norms (|x - c|^2 = |x|^2 - 2 x.c + |c|^2),
and a running minimum keeps every sample's distance to its nearest center: O(N d) a pick,
memory-bound. Other mixes run as one combined greedy pass (tasks/selection/strategies.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tasks.config import (
    BUILTIN_METADATA_KEYS,
    CATEGORICAL_METADATA_KEYS,
    SelectionConfig,
    SelectionStrategy,
)
from tasks.records.embeddings import EmbeddingTable, read_embeddings
from tasks.records.plan import RunPlan
from tasks.records.samples import KIND_FRAME, STATUS_MOVED, SampleTable
from tasks.records.segments import live_vectors
from tasks.records.selection import Selection, SelectionInputs
from tasks.selection.distances import mean_knn_distance
from tasks.selection.inputs import values_for
from tasks.selection.kcenter import kcenter_greedy, kcenter_greedy_torch
from tasks.selection.pool_neighbours import pool_neighbours
from tasks.selection.quality import selection_quality
from tasks.selection.representative import RepresentativePicks, representative_picks
from tasks.selection.sequences import frame_windows, window_embeddings
from tasks.selection.strategies import (
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


def earlier_picks(
    run_plan: RunPlan, ids: list[str], embeddings: np.ndarray, moved: set[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the samples earlier runs selected, and a mask of this run's rows that are such samples.

    The embeddings come from the datapool's manifest (also for the `moved` ones: datapool ids
    whose content came back under a new key), or from this run's table where this run
    reprocessed them. Shape: ids (N,), embeddings (N, D) -> (M, D), (N,)
    """
    earlier = set(run_plan.previously_selected)
    reprocessed = np.array([i in earlier for i in ids], dtype=bool)
    _, kept = live_vectors(run_plan.kept_segments, selected_only=True)
    parts = [kept.reshape(-1, embeddings.shape[1]), embeddings[reprocessed]]
    if moved and run_plan.vanished_manifest is not None:
        vanished_ids, vanished_picks = live_vectors([run_plan.vanished_manifest], selected_only=True)
        came_back = np.array([i in moved for i in vanished_ids], dtype=bool)
        parts.append(vanished_picks[came_back].reshape(-1, embeddings.shape[1]))
    return np.concatenate(parts), reprocessed


def moved_from(samples: SampleTable) -> set[str]:
    """The datapool ids whose content this run found again under a new key (moved samples)."""
    rows = pq.read_table(samples.path, columns=["status", "duplicate_of"]).to_pydict()
    return {
        was
        for status, was in zip(rows["status"], rows["duplicate_of"], strict=True)
        if status == STATUS_MOVED
    }


class SampleMetadata:
    """The METADATA values of the candidates, a key at a time.

    Keys are built-in columns, `folder`, metadata_from_key's groups and metadata_file's columns.
    """

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
        """The candidates' values of METADATA `key`.

        Shape: -> (N,) float64 (NaN: no value) or str ('': no value)
        """
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

    Shape: query (Q, D), embeddings (N, D) -> (N,)
    """
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
    run_plan: RunPlan,
) -> tuple[list[Threshold], list[Objective], dict[str, np.ndarray]]:
    """The thresholds, the objectives, and the categories of each BALANCE key (`run_plan`: the pool)."""
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
            # Dense neighbourhoods are typical: the closer the k nearest, the higher. The
            # neighbours are the datapool's samples as well as this run's: typical of all the data.
            k = strategy.neighbours
            pool = pool_neighbours(embeddings, run_plan.kept_segments, run_plan.pool_indexes, k)
            density = mean_knn_distance(embeddings, k, seed=config.seed, outside=pool.squared_distances())
            typical = 1.0 / (1.0 + density)
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
    """A reason for each diversity pick: seeded first pick, or its distance to the nearest pick before it."""
    return [
        "diversity: first pick (seeded)"
        if np.isinf(d)
        else f"diversity: distance {d:.4f} to the nearest pick before it (this run's or earlier runs')"
        for d in distances
    ]


def representative_reasons(result: RepresentativePicks) -> list[str]:
    """A reason for each representative pick: how many samples it is nearest to, at what mean distance."""
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
    """REPRESENTATIVE or DIVERSITY on its own (or over windows).

    Returns the picks, a reason each, and the device that computed them.
    """
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
    """REPRESENTATIVE or DIVERSITY over windows of `length` consecutive frames.

    `requested` counts frames, so requested // length windows (at least one) are picked, every
    frame of each. Returns (picked rows of `ids`, a reason each, how many frames were candidates,
    the device).
    """
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
    """Select from this run's clean samples (or windows of `sequence_length` frames).

    The picks are diverse also against what earlier runs selected; write (id, rank, reason) to `path`.
    """
    ids, embeddings = read_embeddings(table)
    chosen, reprocessed = earlier_picks(run_plan, ids, embeddings, moved_from(samples))
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
        thresholds, objectives, balanced = strategy_terms(config, samples, ids, embeddings, inputs, run_plan)
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
    if candidates == 0:
        # Every nightly run after the first over an unchanged source ends here: not a warning.
        note = "nothing new to select: this run has no new clean samples"
        logger.info(note)
    elif requested > candidates:
        held = "whole sequences hold only" if sequence_length is not None else "this run has only"
        note = (
            f"asked for {requested} samples but {held} {candidates} new clean samples: "
            f"selected all {candidates}"
        )
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
