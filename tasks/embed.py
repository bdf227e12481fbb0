"""Embed: run the ONNX model over each shard's uint8 cache with ONNX Runtime.

The session (provider, options, IO binding) is tasks/onnx_session.py's; the provider that
actually ran is recorded per shard.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from prefect import task
from pydantic import BaseModel

from tasks.config import EmbeddingConfig
from tasks.export import OnnxModel
from tasks.fingerprint import code_version, digest, stage_cache_key
from tasks.inspect import ShardInspection
from tasks.onnx_session import open_session
from tasks.selection_inputs import SelectionInputs

EMBEDDINGS_FILE = "embeddings.npy"


class ShardEmbeddings(BaseModel, frozen=True):
    """Embeddings of one shard's ok samples, in cache-row order."""

    shard_index: int
    path: str
    count: int
    provider: str


def embed_shard_images(
    inspection: ShardInspection,
    model: OnnxModel,
    config: EmbeddingConfig,
    directory: Path,
    threads: int | None = None,
) -> ShardEmbeddings:
    session = open_session(model.path, config, threads)
    path = directory / EMBEDDINGS_FILE
    embeddings = session.embed(inspection.open_images())
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{EMBEDDINGS_FILE}.{threading.get_ident()}.partial"
    with partial.open("wb") as handle:
        np.save(handle, embeddings)
    partial.replace(path)
    return ShardEmbeddings(
        shard_index=inspection.shard.index,
        path=str(path),
        count=len(embeddings),
        provider=session.provider,
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
    cache_dir: Path,
    threads: int | None = None,
) -> ShardEmbeddings:
    key = digest(inspection.directory, model.sha256, code_version())
    return embed_shard_images(inspection, model, config, cache_dir / "embeddings" / key, threads)
