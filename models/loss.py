"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """Contrastive loss over two views of a batch (Chen et al., 2020, eq. 1).

    Each of the 2B projections has one positive (the other view of its image) and
    2B - 2 negatives (every view of every other image in the batch).

    Args:
        temperature: softmax temperature; SimCLR used 0.1 to 0.5, 0.5 for small batches.

    Shape: z0, z1: (B, D) -> scalar
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """The mean loss over both views' projections: z0, z1 (B, D) -> scalar."""
        if z0.shape != z1.shape or z0.ndim != 2:
            raise ValueError(f"views must both be (B, D), got {tuple(z0.shape)} and {tuple(z1.shape)}")
        batch = z0.shape[0]
        z = F.normalize(torch.cat([z0, z1]), dim=1)  # (2B, D)
        logits = z @ z.T / self.temperature  # (2B, 2B)
        # A view is never its own negative.
        logits.fill_diagonal_(float("-inf"))
        targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
        return F.cross_entropy(logits, targets)
