"""The embedding model: uint8 images in, L2-normalised embeddings out.

Input normalisation lives inside the model (and so inside the exported ONNX graph): the
host sends uint8 NHWC batches, a quarter of the bytes of float32, and the device does
the arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import BackboneName, ResNet

# ImageNet channel statistics: a conventional, fixed normalisation (the model is trained
# from scratch, so any fixed affine map works; this one keeps activations near unit scale).
CHANNEL_MEAN = (0.485, 0.456, 0.406)
CHANNEL_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines the network's shape; stored in every checkpoint."""

    backbone: BackboneName = "resnet18"
    width: int = 64  # channels of the first stage; 64 is the paper's ResNet-18
    input_size: int = 64  # square side in pixels the model sees
    embedding_dim: int = 128  # k-center cost grows linearly with it

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Embedder(nn.Module):
    """Backbone followed by a linear map to the embedding dimension.

    SimCLR trains the backbone (its head sits on `features`, as in the paper); the linear
    map is then set to the principal components of the run's features
    (`fit_principal_components`): a centred projection keeps the backbone's geometry, which
    labels neighbours better than any layer the contrastive loss shapes, and it keeps an
    untrained network's features from collapsing onto one direction.

    Shape: forward: uint8 (B, S, S, 3) -> float32 (B, embedding_dim), unit L2 norm
           features: float32 (B, 3, S, S) in [0, 1] -> float32 (B, backbone.out_features)
           represent: float32 (B, 3, S, S) in [0, 1] -> float32 (B, embedding_dim)
    (float16 in place of float32 after `.half()`.)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNet(config.backbone, config.width)
        self.embedding = nn.Linear(self.backbone.out_features, config.embedding_dim)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CHANNEL_STD).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(x))

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> (B, 3, S, S) in [0, 1], in the model's own dtype, so a
        `.half()` model takes the same uint8 images."""
        return images.permute(0, 3, 1, 2).to(self.mean.dtype) / 255.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.represent(self.to_unit_range(images)), dim=1)

    @torch.no_grad()
    def fit_principal_components(self, features: torch.Tensor) -> None:
        """Set the linear map to project centred features onto their top principal
        components (fewer rows than embedding_dim leave the remaining outputs at zero).

        Shape: features (N, backbone.out_features) float32
        """
        mean = features.mean(dim=0)
        _, _, components = torch.linalg.svd(features - mean, full_matrices=False)  # (r, F)
        weight = torch.zeros_like(self.embedding.weight)
        rank = min(len(components), len(weight))
        weight[:rank] = components[:rank]
        self.embedding.weight.copy_(weight)
        self.embedding.bias.copy_(-(weight @ mean))
