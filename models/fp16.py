"""The fp16 version of the exported embedder, for GPUs.

Half the weight bytes and tensor cores, with the same uint8 NHWC input and float32 output
as the fp32 graph.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnxconverter_common import float16

from models.variant import MIN_COSINE_AGREEMENT, checked_agreement, describe_variant

# Kept in fp32: the converter rewrites a Cast's output type but not its `to` attribute, so
# the graph's uint8 -> float Cast would no longer type-check; left as is, the converter
# puts its own fp32 -> fp16 Cast after it.
FP32_OPERATORS = [*float16.DEFAULT_OP_BLOCK_LIST, "Cast"]


def convert_fp16(
    fp32_path: Path, fp16_path: Path, check_images: np.ndarray, min_cosine: float = MIN_COSINE_AGREEMENT
) -> float:
    """Write the fp16 version of the ONNX model at `fp32_path` to `fp16_path`.

    Weights and activations in fp16, input (uint8) and output (float32) unchanged, metadata
    carried over with `precision` fp16.

    Returns the smallest cosine similarity between fp32 and fp16 embeddings of
    `check_images` (uint8 NHWC), computed on ONNX Runtime's CPU provider.

    Raises:
        ValueError: the agreement is below `min_cosine`; nothing is written.
    """
    with warnings.catch_warnings():
        # One warning per weight too small for fp16 (it becomes fp16's smallest normal):
        # expected for trained weights, and the agreement check below is what counts.
        warnings.simplefilter("ignore", UserWarning)
        graph = float16.convert_float_to_float16(
            onnx.load(str(fp32_path)), keep_io_types=True, op_block_list=FP32_OPERATORS
        )
    describe_variant(graph, fp32_path, "fp16")
    fp16_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=fp16_path.parent) as folder:
        converted = Path(folder) / "fp16.onnx"
        onnx.save(graph, str(converted))
        agreement = checked_agreement(fp32_path, converted, check_images, "fp16", min_cosine)
        converted.replace(fp16_path)
    return agreement
