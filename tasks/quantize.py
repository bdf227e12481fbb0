"""Quantize: the int8 version of the exported model, for embedding on the CPU.

Calibrated on the run's own cached images; if int8 would move embeddings too far from
fp32 (models/quantize.py's agreement check), the run embeds with fp32 and says why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from prefect import task

from models.quantize import quantize_int8
from tasks.export import OnnxModel
from tasks.fingerprint import code_version, digest, file_sha256, stage_cache_key
from tasks.image_cache import ImageCache, unique_image_indices
from tasks.inspect import SampleTable, ShardInspection

logger = logging.getLogger(__name__)

INT8_MODEL_FILE = "model.int8.onnx"
# Calibration images, spread evenly over the clean pool: enough for stable activation
# ranges, few enough to calibrate in seconds on 2 cores.
CALIBRATION_IMAGES = 256


def calibration_images(inspections: list[ShardInspection], samples: SampleTable) -> np.ndarray:
    """Up to CALIBRATION_IMAGES clean images, evenly spaced in id order. Shape: (n, S, S, 3)"""
    cache = ImageCache(inspections)
    indices = unique_image_indices(cache, samples.path)
    if len(indices) > CALIBRATION_IMAGES:
        indices = indices[np.linspace(0, len(indices) - 1, CALIBRATION_IMAGES).astype(np.int64)]
    return cache.gather(indices)


def quantize_model(
    model: OnnxModel, inspections: list[ShardInspection], samples: SampleTable, directory: Path
) -> OnnxModel:
    """The int8 model, or `model` itself when int8 does not agree with it closely enough."""
    path = directory / INT8_MODEL_FILE
    try:
        agreement = quantize_int8(Path(model.path), path, calibration_images(inspections, samples))
    except ValueError as error:
        logger.warning("%s: embedding with fp32", error)
        return model
    logger.info("int8 model %s: smallest cosine similarity to fp32 %.4f", path, agreement)
    return model.model_copy(
        update={
            "path": str(path),
            "sha256": file_sha256(path),
            "precision": "int8",
            "int8_min_cosine": agreement,
        }
    )


@task(name="quantize", cache_key_fn=stage_cache_key("quantize"), persist_result=True)
def quantize(
    model: OnnxModel, inspections: list[ShardInspection], samples: SampleTable, cache_dir: Path
) -> OnnxModel:
    key = digest(model.sha256, samples.path, code_version())
    return quantize_model(model, inspections, samples, cache_dir / "onnx" / key)
