"""What a lower-precision variant of the exported embedder (int8, fp16) must satisfy.

Embeddings close to the fp32 graph's on the caller's images, and a description that
names its precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from models.export import INPUT_NAME, OUTPUT_NAME, onnx_metadata

# The smallest cosine similarity between an image's fp32 and variant embeddings that is
# accepted: selection compares distances between embeddings around 0.1-1, so an error of
# 1e-2 in cosine (about 0.14 in distance at worst) is the most it can absorb.
MIN_COSINE_AGREEMENT = 0.99


def cpu_embeddings(path: Path, images: np.ndarray) -> np.ndarray:
    """Embeddings of `images` by the model at `path` on ONNX Runtime's CPU provider.

    Shape: (N, S, S, 3) -> (N, D)
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: images})[0])


def checked_agreement(
    fp32_path: Path, variant_path: Path, images: np.ndarray, precision: str, min_cosine: float
) -> float:
    """The smallest cosine similarity between the two models' embeddings of `images`.

    Raises:
        ValueError: it is below `min_cosine`.
    """
    agreement = float(
        np.min(np.sum(cpu_embeddings(fp32_path, images) * cpu_embeddings(variant_path, images), 1))
    )
    if agreement < min_cosine:
        raise ValueError(
            f"{precision} version of {fp32_path} changes embeddings too much: smallest cosine "
            f"similarity to fp32 is {agreement:.4f} (at least {min_cosine} is required)"
        )
    return agreement


def describe_variant(graph: onnx.ModelProto, fp32_path: Path, precision: str) -> None:
    """Give `graph` the fp32 graph's metadata_props, with `precision` set."""
    del graph.metadata_props[:]
    for key, value in {**onnx_metadata(fp32_path), "precision": precision}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
