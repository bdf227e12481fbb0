"""Projection heads for self-supervised training."""

from __future__ import annotations

import torch
from torch import nn


class SimCLRProjectionHead(nn.Module):
    """The MLP SimCLR puts between the representation and the contrastive loss.

    Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations": a hidden layer with ReLU; the loss sees its output, downstream
    tasks use the representation before it.

    Shape: (B, in_features) -> (B, out_features)
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden_features),
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project representations: (B, in_features) -> (B, out_features)."""
        return self.layers(x)
