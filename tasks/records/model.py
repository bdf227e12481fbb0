"""The model a run embeds with: the trained checkpoint and its ONNX export."""

from __future__ import annotations

from pydantic import BaseModel

CHECKPOINT_FILE = "checkpoint.pt"


class TrainedModel(BaseModel, frozen=True):
    """The trained checkpoint, and how its training went."""

    checkpoint: str
    trained: bool
    images: int
    epochs: int
    images_per_second: float
    final_loss: float | None
    device: str
    # Whether training.budget_minutes ended the training before its epochs did.
    budget_reached: bool = False


MODEL_FILE = "model.onnx"


class OnnxModel(BaseModel, frozen=True):
    """The model's ONNX export: where it is, its digest, shapes, precision and parity with the checkpoint."""

    path: str
    sha256: str
    embedding_dim: int
    input_size: int
    parity_max_abs_diff: float | None  # None for a model this run did not export
    precision: str = "fp32"
    # For int8 and fp16: the smallest cosine similarity between an image's fp32 embedding and this model's.
    min_cosine_to_fp32: float | None = None
