"""Embed: run the ONNX model over each shard's uint8 cache with ONNX Runtime.

CUDA when it is asked for (or `auto`) and usable, the CPU otherwise; the provider that
actually ran is read back from the session and recorded, never assumed.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
from prefect import task
from pydantic import BaseModel

from models.export import INPUT_NAME, OUTPUT_NAME
from tasks.config import EmbeddingConfig
from tasks.export import OnnxModel
from tasks.fingerprint import code_version, digest, stage_cache_key
from tasks.gpu import nvidia_gpu_count
from tasks.inspect import ShardInspection
from tasks.selection_inputs import SelectionInputs

logger = logging.getLogger(__name__)

EMBEDDINGS_FILE = "embeddings.npy"
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class ShardEmbeddings(BaseModel, frozen=True):
    """Embeddings of one shard's ok samples, in cache-row order."""

    shard_index: int
    path: str
    count: int
    provider: str


def requested_providers(device: str) -> list[str]:
    usable = CUDA in ort.get_available_providers() and nvidia_gpu_count() > 0
    if device == "cuda" and not usable:
        logger.warning("embedding.device is cuda but no usable CUDA GPU was found: embedding on the CPU")
    return [CUDA, CPU] if device in ("cuda", "auto") and usable else [CPU]


def embedding_precision(config: EmbeddingConfig) -> str:
    """fp32 or int8: under auto, int8 where the CPU provider runs (int8 is a CPU speed-up;
    the GPU's equivalent is fp16)."""
    if config.precision != "auto":
        return config.precision
    return "int8" if requested_providers(config.device) == [CPU] else "fp32"


# Sessions are reused across shards of a run: building one costs more than a small shard.
_session_lock = threading.Lock()


@lru_cache(maxsize=4)
def _cached_session(model_path: str, device: str, num_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers: list[str | tuple[str, dict[str, str]]] = [
        # HEURISTIC: a new input shape must not trigger a cuDNN benchmark.
        (CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}) if p == CUDA else p
        for p in requested_providers(device)
    ]
    session = ort.InferenceSession(model_path, sess_options=options, providers=providers)
    used = session.get_providers()[0]
    if device == "cuda" and used != CUDA:
        logger.warning("embedding.device is cuda but ONNX Runtime could not use it: embedding on the CPU")
    return session


def open_session(
    model_path: str, config: EmbeddingConfig, threads: int | None = None
) -> ort.InferenceSession:
    """`threads`: the engine's share of cores for one session (None: every core);
    `embedding.num_threads` overrides it."""
    with _session_lock:
        return _cached_session(
            model_path, config.device, config.num_threads or threads or os.cpu_count() or 1
        )


def embed_images(session: ort.InferenceSession, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Embed uint8 images in batches of one fixed shape (the last one padded with zeros),
    so the provider never sees a new shape. Shape: (N, S, S, 3) -> float32 (N, D)"""
    count = len(images)
    dim = session.get_outputs()[0].shape[1]
    out = np.empty((count, dim), dtype=np.float32)
    batch = np.zeros((batch_size, *images.shape[1:]), dtype=np.uint8)
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        batch[:n] = images[start : start + n]
        out[start : start + n] = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0][:n]
    return out


def embed_shard_images(
    inspection: ShardInspection,
    model: OnnxModel,
    config: EmbeddingConfig,
    directory: Path,
    threads: int | None = None,
) -> ShardEmbeddings:
    session = open_session(model.path, config, threads)
    path = directory / EMBEDDINGS_FILE
    embeddings = embed_images(session, inspection.open_images(), config.batch_size)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{EMBEDDINGS_FILE}.{threading.get_ident()}.partial"
    with partial.open("wb") as handle:
        np.save(handle, embeddings)
    partial.replace(path)
    return ShardEmbeddings(
        shard_index=inspection.shard.index,
        path=str(path),
        count=len(embeddings),
        provider=session.get_providers()[0],
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
        np.save(path, embed_images(session, np.load(images), config.batch_size))
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
