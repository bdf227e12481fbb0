"""The backbones winnow can train, by name: torch-free, for the configuration to check."""

from typing import Literal

BackboneName = Literal["resnet10", "resnet18", "resnet34"]
