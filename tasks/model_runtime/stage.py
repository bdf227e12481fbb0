"""The model stages' tasks: train, export, quantize, embed."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.config import EmbeddingConfig, TrainingConfig
from tasks.fingerprint import code_version, digest, file_sha256, stage_cache_key
from tasks.model_runtime.embedding import (
    EMBEDDINGS_FOLDER,
    embed_query_images,
    embed_shard_images,
    gather_embeddings,
)
from tasks.model_runtime.export import export_checkpoint
from tasks.model_runtime.quantize import quantize_model
from tasks.model_runtime.training import train_or_load
from tasks.records.embeddings import EMBEDDINGS_FILE, EmbeddingTable, ShardEmbeddings
from tasks.records.model import OnnxModel, TrainedModel
from tasks.records.samples import SampleTable, ShardInspection
from tasks.records.selection import SelectionInputs
from tasks.storage.shard_store import FETCHED_FOLDER, ShardStore


@task(name="train", cache_key_fn=stage_cache_key("train"), persist_result=True)
def train(
    inspections: list[ShardInspection], samples: SampleTable, training: TrainingConfig, cache_dir: Path
) -> TrainedModel:
    """Train the model (or take the configured or a seeded one), saved under a key of its inputs."""
    # The samples table's path is per run; its content is fixed by the shards it came from.
    key = digest(*(i.location for i in inspections), training.model_dump_json(), code_version())
    return train_or_load(
        inspections, samples, training, cache_dir / "models" / key, cache_dir / FETCHED_FOLDER
    )


@task(name="export", cache_key_fn=stage_cache_key("export"), persist_result=True)
def export(trained: TrainedModel, cache_dir: Path) -> OnnxModel:
    """The trained checkpoint as ONNX, saved under a key of the checkpoint and the code version."""
    key = digest(file_sha256(Path(trained.checkpoint)), code_version())
    return export_checkpoint(trained, cache_dir / "onnx" / key)


@task(name="quantize", cache_key_fn=stage_cache_key("quantize"), persist_result=True)
def quantize(
    model: OnnxModel,
    inspections: list[ShardInspection],
    samples: SampleTable,
    precision: str,
    cache_dir: Path,
) -> OnnxModel:
    """The `precision` version of `model`, or `model` itself when they do not agree closely enough."""
    key = digest(model.sha256, samples.path, precision, code_version())
    return quantize_model(
        model, inspections, samples, precision, cache_dir / "onnx" / key, cache_dir / FETCHED_FOLDER
    )


@task(name="embed-queries")
def embed_queries(
    inputs: SelectionInputs, model: OnnxModel, config: EmbeddingConfig, work_dir: Path
) -> SelectionInputs:
    """`inputs` with the SIMILARITY query images embedded by the run's model."""
    return embed_query_images(inputs, model, config, work_dir)


@task(name="embed-shard", cache_key_fn=stage_cache_key("embed", ignored=("threads",)), persist_result=True)
def embed_shard(
    inspection: ShardInspection,
    model: OnnxModel,
    config: EmbeddingConfig,
    shards: ShardStore,
    threads: int | None = None,
) -> ShardEmbeddings:
    """Embed one shard's cached images, saved under a key of the shard, the model and the code version."""
    key = digest(inspection.location, model.sha256, code_version())
    return embed_shard_images(inspection, model, config, shards, f"{EMBEDDINGS_FOLDER}/{key}", threads)


@task(name="collect-embeddings")
def collect_embeddings(
    samples: SampleTable, shards: list[ShardEmbeddings], dim: int, work_dir: Path, scratch: Path
) -> EmbeddingTable:
    """The run's embedding table: each ok sample's embedding, written in `work_dir`."""
    return gather_embeddings(samples, shards, dim, work_dir / EMBEDDINGS_FILE, scratch)
