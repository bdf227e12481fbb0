"""Export: the trained checkpoint as an ONNX graph, verified against PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from prefect import task
from pydantic import BaseModel

from models.checkpoint import load_checkpoint
from models.export import export_onnx, verify_onnx
from tasks.fingerprint import code_version, digest, file_sha256, stage_cache_key
from tasks.train import TrainedModel

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
# Images in the parity check: random uint8 batches exercise every input value range.
PARITY_BATCH = 8


class OnnxModel(BaseModel, frozen=True):
    path: str
    sha256: str
    embedding_dim: int
    input_size: int
    parity_max_abs_diff: float | None  # None for a model this run did not export
    precision: str = "fp32"
    # For int8 and fp16: the smallest cosine similarity between an image's fp32 embedding and this model's.
    min_cosine_to_fp32: float | None = None


def export_checkpoint(trained: TrainedModel, directory: Path, seed: int = 0) -> OnnxModel:
    model = load_checkpoint(Path(trained.checkpoint))
    path = directory / MODEL_FILE
    export_onnx(model, path, {"code_version": code_version(), "checkpoint": trained.checkpoint})
    size = model.config.input_size
    images = np.random.default_rng(seed).integers(0, 256, (PARITY_BATCH, size, size, 3), dtype=np.uint8)
    difference = verify_onnx(model, path, images)
    logger.info("exported %s (ONNX Runtime vs PyTorch: max abs diff %.1e)", path, difference)
    return OnnxModel(
        path=str(path),
        sha256=file_sha256(path),
        embedding_dim=model.config.embedding_dim,
        input_size=size,
        parity_max_abs_diff=difference,
    )


@task(name="export", cache_key_fn=stage_cache_key("export"), persist_result=True)
def export(trained: TrainedModel, cache_dir: Path) -> OnnxModel:
    key = digest(file_sha256(Path(trained.checkpoint)), code_version())
    return export_checkpoint(trained, cache_dir / "onnx" / key)
