"""Export: the trained checkpoint as an ONNX graph, verified against PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.checkpoint import load_checkpoint
from models.export import export_onnx, verify_onnx
from tasks.fingerprint import code_version, file_sha256
from tasks.records.model import MODEL_FILE, OnnxModel, TrainedModel

logger = logging.getLogger(__name__)

# Images in the parity check: random uint8 batches exercise every input value range.
PARITY_BATCH = 8


def export_checkpoint(trained: TrainedModel, directory: Path, seed: int = 0) -> OnnxModel:
    """Export the checkpoint to ONNX in `directory`, checked against PyTorch on seeded random images."""
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
