"""PyTorch models: backbones, SSL heads and losses, batch augmentations, ONNX export.

Nothing here imports Prefect.
"""

from models.augment import ViewAugmentation, augment_view
from models.backbone import ResNet
from models.checkpoint import load_checkpoint, save_checkpoint
from models.embedder import Embedder, ModelConfig
from models.heads import SimCLRProjectionHead
from models.loss import NTXentLoss

__all__ = [
    "Embedder",
    "ModelConfig",
    "NTXentLoss",
    "ResNet",
    "SimCLRProjectionHead",
    "ViewAugmentation",
    "augment_view",
    "load_checkpoint",
    "save_checkpoint",
]
