"""Embed: run the ONNX model over each shard's uint8 cache with ONNX Runtime.

The session (provider, options, IO binding) is tasks/onnx_session.py's; the provider that
actually ran is recorded per shard.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from pydantic import BaseModel

from tasks.config import EmbeddingConfig
from tasks.export import OnnxModel
from tasks.fingerprint import code_version, digest, stage_cache_key
from tasks.inspect import ShardInspection
from tasks.onnx_session import open_session
from tasks.selection_inputs import SelectionInputs
from tasks.shard_store import WORKER_SCRATCH, ShardStore
from tasks.telemetry import sampling, visible_gpu

EMBEDDINGS_FILE = "embeddings.npy"
EMBEDDINGS_FOLDER, MODELS_FOLDER = "embeddings", "models"


class ShardEmbeddings(BaseModel, frozen=True):
    """Embeddings of one shard's ok samples, in cache-row order: `key` in `store`."""

    shard_index: int
    store: ShardStore
    key: str
    count: int
    provider: str
    device: str  # where it was embedded: host and GPU, e.g. node-3/gpu1
    gpu: dict[str, Any] | None  # that GPU, sampled while embedding (tasks/telemetry.py)

    def load(self, scratch: Path) -> np.ndarray:
        """The embeddings, memory-mapped (fetched into `scratch` if remote). Shape: (count, D)"""
        return np.load(self.store.fetch(self.key, scratch), mmap_mode="r")


def model_key(model: OnnxModel) -> str:
    return f"{MODELS_FOLDER}/{model.sha256}.onnx"


def share_model(model: OnnxModel, shards: ShardStore) -> None:
    """Put the model where embed tasks on other machines can fetch it (a remote store)."""
    if not shards.is_local and not shards.exists(model_key(model)):
        shards.put_file(model_key(model), Path(model.path))


def model_file(model: OnnxModel, shards: ShardStore) -> str:
    """The model as a file this process can open: where the flow wrote it when the store is
    a folder every machine shares, else fetched once into this worker's scratch."""
    return model.path if shards.is_local else str(shards.fetch(model_key(model), WORKER_SCRATCH))


def embed_shard_images(
    inspection: ShardInspection,
    model: OnnxModel,
    config: EmbeddingConfig,
    shards: ShardStore,
    folder: str,
    threads: int | None = None,
) -> ShardEmbeddings:
    """Embed one shard's cached images into `folder/embeddings.npy` of `shards`. A remote
    shard's images are fetched into a scratch folder removed right after."""
    session = open_session(model_file(model, shards), config, threads)
    with (
        tempfile.TemporaryDirectory(prefix="winnow-embed-") as scratch,
        shards.writing(folder, last=EMBEDDINGS_FILE) as directory,
    ):
        with sampling() as gpu:
            embeddings = session.embed(inspection.open_images(Path(scratch)))
        np.save(directory / EMBEDDINGS_FILE, embeddings)
    return ShardEmbeddings(
        shard_index=inspection.shard.index,
        store=shards,
        key=f"{folder}/{EMBEDDINGS_FILE}",
        count=len(embeddings),
        provider=session.provider,
        device=f"{socket.gethostname()}/gpu{visible_gpu()}",
        gpu=gpu.summary(),
    )


def embed_query_images(
    inputs: SelectionInputs, model: OnnxModel, config: EmbeddingConfig, directory: Path
) -> SelectionInputs:
    """`inputs` with the SIMILARITY query images embedded by the run's model."""
    if not inputs.query_images:
        return inputs
    session = open_session(model.path, config)
    directory.mkdir(parents=True, exist_ok=True)
    embedded = {}
    for index, images in inputs.query_images.items():
        path = directory / f"query-embeddings-{index}.npy"
        np.save(path, session.embed(np.load(images)))
        embedded[index] = str(path)
    return inputs.model_copy(update={"query_embeddings": embedded})


@task(name="embed-queries")
def embed_queries(
    inputs: SelectionInputs, model: OnnxModel, config: EmbeddingConfig, work_dir: Path
) -> SelectionInputs:
    return embed_query_images(inputs, model, config, work_dir)


@task(name="embed-shard", cache_key_fn=stage_cache_key("embed", ignored=("threads",)), persist_result=True)
def embed_shard(
    inspection: ShardInspection,
    model: OnnxModel,
    config: EmbeddingConfig,
    shards: ShardStore,
    threads: int | None = None,
) -> ShardEmbeddings:
    key = digest(inspection.location, model.sha256, code_version())
    return embed_shard_images(inspection, model, config, shards, f"{EMBEDDINGS_FOLDER}/{key}", threads)
