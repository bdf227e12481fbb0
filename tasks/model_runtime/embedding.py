"""Embed: run the ONNX model over each shard's uint8 cache with ONNX Runtime.

The session (provider, options, IO binding) is tasks/model_runtime/sessions.py's; the provider that
actually ran is recorded per shard.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.config import EmbeddingConfig
from tasks.model_runtime.sessions import open_session
from tasks.model_runtime.telemetry import sampling, visible_gpu
from tasks.records.embeddings import (
    SHARD_EMBEDDINGS_FILE,
    EmbeddingTable,
    ShardEmbeddings,
    write_embedding_table,
)
from tasks.records.model import OnnxModel
from tasks.records.samples import STATUS_OK, SampleTable, ShardInspection
from tasks.records.selection import SelectionInputs
from tasks.storage.shard_store import WORKER_SCRATCH, ShardStore

EMBEDDINGS_FOLDER, MODELS_FOLDER = "embeddings", "models"


def model_key(model: OnnxModel) -> str:
    """The model's key in a shard store: `models/<sha256>.onnx`."""
    return f"{MODELS_FOLDER}/{model.sha256}.onnx"


def share_model(model: OnnxModel, shards: ShardStore) -> None:
    """Put the model where embed tasks on other machines can fetch it (a remote store)."""
    if not shards.is_local and not shards.exists(model_key(model)):
        shards.put_file(model_key(model), Path(model.path))


def model_file(model: OnnxModel, shards: ShardStore) -> str:
    """The model as a file this process can open.

    Where the flow wrote it when the store is a folder every machine shares, else fetched once
    into this worker's scratch.
    """
    return model.path if shards.is_local else str(shards.fetch(model_key(model), WORKER_SCRATCH))


def embed_shard_images(
    inspection: ShardInspection,
    model: OnnxModel,
    config: EmbeddingConfig,
    shards: ShardStore,
    folder: str,
    threads: int | None = None,
) -> ShardEmbeddings:
    """Embed one shard's cached images into `folder/embeddings.npy` of `shards`.

    A remote shard's images are fetched into a scratch folder removed right after.
    """
    session = open_session(model_file(model, shards), config, threads)
    with (
        tempfile.TemporaryDirectory(prefix="winnow-embed-") as scratch,
        shards.writing(folder, last=SHARD_EMBEDDINGS_FILE) as directory,
    ):
        with sampling() as gpu:
            embeddings = session.embed(inspection.open_images(Path(scratch)))
        np.save(directory / SHARD_EMBEDDINGS_FILE, embeddings)
    return ShardEmbeddings(
        shard_index=inspection.shard.index,
        store=shards,
        key=f"{folder}/{SHARD_EMBEDDINGS_FILE}",
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


def gather_embeddings(
    samples: SampleTable, shards: list[ShardEmbeddings], dim: int, path: Path, scratch: Path
) -> EmbeddingTable:
    """Join each ok sample to its row in its shard's embeddings and write `path`.

    Remote shards' embeddings are fetched into `scratch`.
    """
    rows = pq.read_table(samples.path, columns=["id", "status", "shard", "cache_row"]).to_pydict()
    by_shard = {shard.shard_index: shard.load(scratch) for shard in shards}
    ids = [i for i, status in zip(rows["id"], rows["status"], strict=True) if status == STATUS_OK]
    vectors = np.zeros((0, dim), dtype=np.float32)
    if ids:
        vectors = np.stack(
            [
                by_shard[shard][row]
                for status, shard, row in zip(rows["status"], rows["shard"], rows["cache_row"], strict=True)
                if status == STATUS_OK
            ]
        )
    return write_embedding_table(ids, vectors, path)
