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

from models.backbone import ResNet
from models.names import BackboneName

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
    # Side of the low-resolution copy of the image that joins the backbone's features
    # (0: the backbone alone, as checkpoints from before it had).
    pixel_grid: int = 8

    def __post_init__(self) -> None:
        if self.pixel_grid and self.input_size % self.pixel_grid:
            raise ValueError(
                f"input_size {self.input_size} must be a multiple of pixel_grid {self.pixel_grid}"
            )

    def to_dict(self) -> dict[str, object]:
        """The config as a plain dict, field name to value."""
        return asdict(self)


class Embedder(nn.Module):
    """Backbone and a low-resolution copy of the pixels, mapped linearly to the embedding.

    SimCLR trains the backbone (its head sits on `features`, as in the paper). The
    representation is the backbone's features beside the image average-pooled to
    pixel_grid x pixel_grid, each block scaled to unit total variance over the run's images,
    and the linear map is set to its principal components (`fit_principal_components`).
    The pixels keep the layout a small image's identity lives in (a digit, a glyph), which
    a network trained briefly on a few thousand images has not learned yet; the features
    carry what pixels miss (a crop of a photograph, shifted or recoloured). A centred
    projection keeps that geometry and keeps an untrained network's features from
    collapsing onto one direction.

    Shape: forward: uint8 (B, S, S, 3) -> float32 (B, embedding_dim), unit L2 norm
           features: float32 (B, 3, S, S) in [0, 1] -> float32 (B, backbone.out_features)
           blocks: float32 (B, 3, S, S) in [0, 1] -> [(B, F), (B, 3 * pixel_grid^2)]
           represent: float32 (B, 3, S, S) in [0, 1] -> float32 (B, embedding_dim)
    (float16 in place of float32 after `.half()`.)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNet(config.backbone, config.width)
        pixels = 3 * config.pixel_grid**2
        self.embedding = nn.Linear(self.backbone.out_features + pixels, config.embedding_dim)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.block_scale: torch.Tensor
        self.register_buffer("mean", torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CHANNEL_STD).view(1, 3, 1, 1))
        # One factor a block (features, pixels): set by fit_principal_components.
        self.register_buffer("block_scale", torch.ones(2 if config.pixel_grid else 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features of images in [0, 1], normalised by the channel statistics first."""
        return self.backbone((x - self.mean) / self.std)

    def blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The representation's blocks, unscaled: the features, then the pooled pixels."""
        normalised = (x - self.mean) / self.std
        parts = [self.backbone(normalised)]
        if self.config.pixel_grid:
            grid = self.config.input_size // self.config.pixel_grid
            parts.append(F.avg_pool2d(normalised, grid).flatten(1))
        return parts

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding before L2 normalisation: the scaled blocks, mapped linearly."""
        scaled = [block * self.block_scale[i] for i, block in enumerate(self.blocks(x))]
        return self.embedding(torch.cat(scaled, dim=1))

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> (B, 3, S, S) in [0, 1], in the model's own dtype.

        So a `.half()` model takes the same uint8 images.
        """
        return images.permute(0, 3, 1, 2).to(self.mean.dtype) / 255.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embed uint8 images: (B, S, S, 3) -> float32 (B, embedding_dim), unit L2 norm."""
        return F.normalize(self.represent(self.to_unit_range(images)), dim=1)

    @torch.no_grad()
    def fit_principal_components(self, blocks: list[torch.Tensor]) -> None:
        """Set the linear map to the top principal components of the scaled representation.

        Scale each block to unit total variance, then set the linear map to project the
        centred representation onto its top principal components (fewer rows than
        embedding_dim leave the remaining outputs at zero).

        Shape: blocks as `blocks` returns them, (N, ...) float32 each
        """
        spread = torch.stack([block.var(dim=0, unbiased=False).sum() for block in blocks])
        self.block_scale.copy_(torch.where(spread > 0, spread.rsqrt(), torch.ones_like(spread)))
        features = torch.cat([block * self.block_scale[i] for i, block in enumerate(blocks)], dim=1)
        mean = features.mean(dim=0)
        _, _, components = torch.linalg.svd(features - mean, full_matrices=False)  # (r, F)
        weight = torch.zeros_like(self.embedding.weight)
        rank = min(len(components), len(weight))
        weight[:rank] = components[:rank]
        self.embedding.weight.copy_(weight)
        self.embedding.bias.copy_(-(weight @ mean))
