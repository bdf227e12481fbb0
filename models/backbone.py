"""ResNet backbones (He et al., 2016, "Deep Residual Learning for Image Recognition").

Written here because there is no CPU build of torchvision on the machines winnow targets.
The architecture is the standard one (ImageNet stem, BasicBlock stages); `width` scales
every stage so that tests and small CPUs can train a narrow copy of the same network.
"""

from __future__ import annotations

import torch
from torch import nn

from models.names import BackboneName

# Number of BasicBlocks in each of the four stages.
STAGE_DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection.

    Shape: (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # Zero-init the last BN so each block starts as identity (Goyal et al., 2017):
        # trains faster and more stably from scratch.
        nn.init.zeros_(self.bn2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block: (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet feature extractor ending in global average pooling.

    Args:
        name: which depth (resnet10, resnet18, resnet34).
        width: channels of the first stage; later stages double it (64 is the paper's).

    Shape: (B, 3, H, W) float -> (B, 8 * width)
    """

    def __init__(self, name: BackboneName = "resnet18", width: int = 64) -> None:
        super().__init__()
        if name not in STAGE_DEPTHS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(STAGE_DEPTHS)}")
        if width < 4:
            raise ValueError(f"backbone width must be at least 4, got {width}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        in_channels = width
        for index, depth in enumerate(STAGE_DEPTHS[name]):
            out_channels = width * 2**index
            for block in range(depth):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.out_features = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features of a batch: (B, 3, H, W) float -> (B, out_features)."""
        features = self.stages(self.stem(x))  # (B, C, h, w)
        return features.mean(dim=(2, 3))  # (B, C)
