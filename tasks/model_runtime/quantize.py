"""Quantize: the lower-precision version of the exported model the embedding device runs fastest.

int8 on the CPU, fp16 on a GPU.

Calibrated and checked on the run's own cached images; if the variant would move
embeddings too far from fp32 (models/variant.py's agreement check), the run embeds with
fp32 and says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.fp16 import convert_fp16
from models.quantize import quantize_int8
from tasks.fingerprint import file_sha256
from tasks.model_runtime.image_cache import ImageCache, unique_image_indices
from tasks.records.model import OnnxModel
from tasks.records.samples import SampleTable, ShardInspection

logger = logging.getLogger(__name__)

# The variant of each precision, and the function that writes it and returns its smallest
# cosine similarity to fp32 on the images it is given.
VARIANTS: dict[str, tuple[str, Callable[[Path, Path, np.ndarray], float]]] = {
    "int8": ("model.int8.onnx", quantize_int8),
    "fp16": ("model.fp16.onnx", convert_fp16),
}

# Calibration images, spread evenly over the clean pool: enough for stable activation
# ranges, few enough to calibrate in seconds on 2 cores.
CALIBRATION_IMAGES = 256


def calibration_images(inspections: list[ShardInspection], samples: SampleTable, scratch: Path) -> np.ndarray:
    """Up to CALIBRATION_IMAGES clean images, evenly spaced in id order.

    Shape: (n, S, S, 3)
    """
    cache = ImageCache(inspections, scratch)
    indices = unique_image_indices(cache, samples.path)
    if len(indices) > CALIBRATION_IMAGES:
        indices = indices[np.linspace(0, len(indices) - 1, CALIBRATION_IMAGES).astype(np.int64)]
    return cache.gather(indices)


def quantize_model(
    model: OnnxModel,
    inspections: list[ShardInspection],
    samples: SampleTable,
    precision: str,
    directory: Path,
    scratch: Path,
) -> OnnxModel:
    """The `precision` (int8 or fp16) model, or `model` itself when they do not agree closely enough.

    Remote shards' images are fetched into `scratch`.
    """
    file_name, write_variant = VARIANTS[precision]
    path = directory / file_name
    try:
        agreement = write_variant(Path(model.path), path, calibration_images(inspections, samples, scratch))
    except ValueError as error:
        logger.warning("%s: embedding with fp32", error)
        return model
    logger.info("%s model %s: smallest cosine similarity to fp32 %.4f", precision, path, agreement)
    return model.model_copy(
        update={
            "path": str(path),
            "sha256": file_sha256(path),
            "precision": precision,
            "min_cosine_to_fp32": agreement,
        }
    )
