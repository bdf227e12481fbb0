from pathlib import Path

import numpy as np
import pytest
import torch

from models import (
    Embedder,
    ModelConfig,
    NTXentLoss,
    ResNet,
    ViewAugmentation,
    augment_view,
    load_checkpoint,
    save_checkpoint,
)
from models.export import PARITY_TOLERANCE, export_onnx, onnx_metadata, verify_onnx

SMALL = ModelConfig(backbone="resnet10", width=8, input_size=32, embedding_dim=16)


def uint8_batch(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_resnet18_has_the_papers_shape() -> None:
    model = ResNet("resnet18", width=64)
    assert model.out_features == 512
    # 11.18M parameters in ResNet-18 without its 1000-class classifier.
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.18e6, rel=0.01)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_augmented_views_have_the_right_shape_range_and_seed() -> None:
    images = torch.from_numpy(uint8_batch(6, 48))
    make = lambda seed: augment_view(images, 32, ViewAugmentation(), torch.Generator().manual_seed(seed))  # noqa: E731
    view = make(0)
    assert view.shape == (6, 3, 32, 32)
    assert view.dtype == torch.float32
    assert float(view.min()) >= 0 and float(view.max()) <= 1
    assert torch.equal(view, make(0))
    assert not torch.equal(view, make(1))


def test_identity_augmentation_only_resizes() -> None:
    identity = ViewAugmentation(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_probability=0,
        jitter_probability=0,
        grayscale_probability=0,
        blur_probability=0,
    )
    images = torch.from_numpy(uint8_batch(2, 32))
    view = augment_view(images, 32, identity, torch.Generator().manual_seed(0))
    assert torch.allclose(view, images.permute(0, 3, 1, 2).float() / 255, atol=1e-5)


def test_invalid_augmentation_says_how_to_fix_it() -> None:
    with pytest.raises(ValueError, match="crop_scale must satisfy 0 < low <= high <= 1"):
        ViewAugmentation(crop_scale=(0.5, 0.2))


def ntxent_reference(z0: np.ndarray, z1: np.ndarray, temperature: float) -> float:
    """NT-Xent from the SimCLR paper, one anchor at a time."""
    z = np.concatenate([z0, z1])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z0)
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        similarities = np.array([z[i] @ z[k] / temperature for k in range(2 * n) if k != i])
        losses.append(-(z[i] @ z[positive] / temperature) + np.log(np.exp(similarities).sum()))
    return float(np.mean(losses))


def test_ntxent_matches_the_papers_formula() -> None:
    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    loss = NTXentLoss(0.3)(torch.tensor(z0), torch.tensor(z1))
    assert float(loss) == pytest.approx(ntxent_reference(z0, z1, 0.3), rel=1e-6)


def test_ntxent_is_lowest_when_views_agree() -> None:
    z = torch.randn(8, 16)
    assert NTXentLoss()(z, z) < NTXentLoss()(z, torch.randn(8, 16))


def test_onnx_export_matches_pytorch_and_describes_itself(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Embedder(SMALL).eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, path, {"code_version": "test"})
    # A batch size the export never saw: the batch axis is dynamic.
    difference = verify_onnx(model, path, uint8_batch(5, 32))
    assert difference < PARITY_TOLERANCE
    metadata = onnx_metadata(path)
    assert metadata["code_version"] == "test"
    assert '"input_size": 32' in metadata["model_config"]
    assert "uint8 NHWC" in metadata["preprocessing"]


def test_embeddings_are_unit_length() -> None:
    embeddings = Embedder(SMALL).eval()(torch.from_numpy(uint8_batch(4, 32)))
    assert embeddings.shape == (4, 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4), atol=1e-5)


def test_checkpoint_round_trip_and_mismatch(tmp_path: Path) -> None:
    model = Embedder(SMALL).eval()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, {"code_version": "test"})
    images = torch.from_numpy(uint8_batch(3, 32))
    assert torch.equal(load_checkpoint(path, expected=SMALL)(images), model(images))
    with pytest.raises(ValueError, match="was trained with"):
        load_checkpoint(
            path, expected=ModelConfig(backbone="resnet10", width=8, input_size=64, embedding_dim=16)
        )
