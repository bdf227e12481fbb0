"""Checkpoints that carry the configuration that made them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.embedder import Embedder, ModelConfig


def save_checkpoint(path: Path, model: Embedder, extra: dict[str, Any]) -> None:
    """Write the weights with the model config and `extra` (training config, code version).

    Written to a temporary name and renamed, so a killed run never leaves half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model_config": model.config.to_dict(), "state_dict": state, **extra}, partial)
    partial.replace(path)


def load_checkpoint(path: Path, expected: ModelConfig | None = None) -> Embedder:
    """Rebuild the model a checkpoint describes.

    Raises:
        ValueError: the checkpoint was made with a different config than `expected`.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    # Checkpoints from before the pooled pixels joined the representation embed without them.
    config = ModelConfig(**{"pixel_grid": 0, **payload["model_config"]})
    if expected is not None and config != expected:
        raise ValueError(
            f"checkpoint {path} was trained with {config}, but the run asks for {expected}; "
            "use a matching training config or train a new model"
        )
    model = Embedder(config)
    model.load_state_dict(payload["state_dict"])
    return model.eval()
