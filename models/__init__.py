"""PyTorch models: backbones, SSL heads and losses, batch augmentations, ONNX export.

Nothing here imports Prefect. The package itself imports nothing, so that the run's
configuration can name a backbone (models/names.py) without loading torch.
"""
