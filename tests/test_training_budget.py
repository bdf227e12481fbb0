"""Training follows a time budget the user can set and see: it stops at the budget with its
learning rate annealed, says how long it has left, and trains on a sample of a large pool;
int8 is built only where it pays."""

import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.train import photo_cache
from models.embedder import Embedder
from tasks.config import EmbeddingConfig, TrainingConfig
from tasks.model_runtime.image_cache import ImageCache
from tasks.model_runtime.sessions import INT8_FROM_SAMPLES, embedding_precision
from tasks.model_runtime.training import model_config, train_simclr, training_sample
from tasks.progress import StageReport, listening
from tasks.storage.shard_store import ShardStore

CPU = torch.device("cpu")


def small_cache(tmp_path: Path, count: int = 64) -> ImageCache:
    inspection = photo_cache(ShardStore(root=str(tmp_path)), "inspect", count, 32)
    return ImageCache([inspection], tmp_path)


def test_a_budget_stops_training_and_the_reports_count_down(tmp_path: Path) -> None:
    training = TrainingConfig(width=8, input_size=32, batch_size=16, epochs=10_000, budget_minutes=0.05)
    reports: list[StageReport] = []
    started = time.perf_counter()
    with listening(reports.append):
        outcome = train_simclr(
            Embedder(model_config(training)), small_cache(tmp_path), np.arange(64), training, CPU
        )
    elapsed = time.perf_counter() - started
    assert outcome.budget_reached and 1 <= outcome.epochs < 10_000
    assert 3.0 <= elapsed < 3.0 + 10  # the budget's 3 s, then at most the step under way and the epoch's end
    assert np.isfinite(outcome.final_loss)
    lines = [r.detail for r in reports if r.stage == "train"]
    assert lines[:-1] and all("left" in line for line in lines[:-1])
    assert lines[-1].startswith(f"epoch {outcome.epochs}/10000, loss ")
    assert lines[-1].endswith(", stopped at the time budget")


def test_without_reaching_the_budget_every_epoch_runs(tmp_path: Path) -> None:
    training = TrainingConfig(width=8, input_size=32, batch_size=16, epochs=2, budget_minutes=30)
    reports: list[StageReport] = []
    with listening(reports.append):
        outcome = train_simclr(
            Embedder(model_config(training)), small_cache(tmp_path), np.arange(64), training, CPU
        )
    assert not outcome.budget_reached and outcome.epochs == 2
    assert [r.detail.split(", loss")[0] for r in reports] == ["epoch 1/2", "epoch 2/2"]
    assert "left" in reports[0].detail and "left" not in reports[-1].detail  # done: nothing left to say


def test_a_large_pool_trains_on_a_seeded_sample_of_max_images() -> None:
    indices = np.arange(0, 3000, 3)
    training = TrainingConfig(max_images=100)
    sample = training_sample(indices, training)
    assert len(sample) == 100 and len(set(sample.tolist())) == 100
    assert set(sample.tolist()) <= set(indices.tolist()) and list(sample) == sorted(sample)
    assert np.array_equal(sample, training_sample(indices, training))  # the seed decides
    assert np.array_equal(training_sample(indices[:50], training), indices[:50])


def test_int8_only_where_it_pays_on_the_cpu() -> None:
    cpu = EmbeddingConfig(device="cpu")
    assert embedding_precision(cpu, samples=INT8_FROM_SAMPLES - 1) == "fp32"
    assert embedding_precision(cpu, samples=INT8_FROM_SAMPLES) == "int8"
    assert embedding_precision(EmbeddingConfig(device="cpu", precision="int8"), samples=10) == "int8"


def test_within_the_budget_the_same_configuration_trains_the_same_weights(tmp_path: Path) -> None:
    """The clock only steers the schedule once the pace would overrun the budget: runs far
    within it (a Dask cluster's and a local run's, a cached and a fresh one) train alike."""
    training = TrainingConfig(width=8, input_size=32, batch_size=16, epochs=3, budget_minutes=30)
    cache = small_cache(tmp_path)
    weights = []
    for _ in range(2):
        torch.manual_seed(training.seed)
        model = Embedder(model_config(training))
        train_simclr(model, cache, np.arange(64), training, CPU)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
