"""Export the embedder to ONNX and prove the export computes what PyTorch computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from models.embedder import CHANNEL_MEAN, CHANNEL_STD, Embedder

# Opset 17 is supported by every ONNX Runtime release of the last years and by TensorRT.
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
# Largest absolute difference allowed between ONNX Runtime and PyTorch on the CPU, for
# unit-norm fp32 embeddings: a few ulps of accumulated reordering error, far below the
# distances selection compares.
PARITY_TOLERANCE = 1e-4


def export_onnx(model: Embedder, path: Path, metadata: dict[str, str]) -> None:
    """Write `model` as ONNX: uint8 NHWC input with a dynamic batch axis.

    The graph carries its own description in metadata_props: the model config, the
    preprocessing it does, the opset and whatever `metadata` adds (code version, ...).
    """
    model = model.eval()
    size = model.config.input_size
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.onnx")
    # The TorchScript exporter (dynamo=False): this plain CNN needs nothing newer, and it
    # exports in a fraction of a second where the dynamo exporter takes several.
    torch.onnx.export(
        model,
        (example,),
        str(partial),
        dynamo=False,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )
    graph = onnx.load(str(partial))
    description = {
        "model_config": json.dumps(model.config.to_dict()),
        "preprocessing": json.dumps(
            {"input": "uint8 NHWC RGB", "scale": 1 / 255, "mean": CHANNEL_MEAN, "std": CHANNEL_STD}
        ),
        "output": "L2-normalised float32 embeddings",
        "opset": str(OPSET),
        **metadata,
    }
    for key, value in description.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    onnx.save(graph, str(partial))
    partial.replace(path)


def onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of the ONNX model at `path`, as a dict (external data not loaded)."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def verify_onnx(model: Embedder, path: Path, images: np.ndarray) -> float:
    """Run `images` (uint8 NHWC) through PyTorch and ONNX Runtime's CPU provider.

    Returns the largest absolute difference.

    Raises:
        ValueError: the difference exceeds PARITY_TOLERANCE.
    """
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(images)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    difference = float(np.max(np.abs(actual - expected)))
    if difference > PARITY_TOLERANCE:
        raise ValueError(
            f"ONNX export {path} differs from PyTorch by {difference:.2e} (tolerance {PARITY_TOLERANCE:.0e})"
        )
    return difference
