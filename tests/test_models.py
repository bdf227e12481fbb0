from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models.augment import ViewAugmentation, augment_view
from models.backbone import ResNet
from models.checkpoint import load_checkpoint, save_checkpoint
from models.embedder import Embedder, ModelConfig
from models.export import INPUT_NAME, PARITY_TOLERANCE, export_onnx, onnx_metadata, verify_onnx
from models.fp16 import convert_fp16
from models.loss import NTXentLoss
from models.quantize import quantize_int8
from tests.images import scene

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


def photo_crops(count: int, size: int) -> np.ndarray:
    """uint8 NHWC crops of a real photograph, as the image cache holds them."""
    photo = np.asarray(scene("astronaut"))
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(count):
        top, left = rng.integers(0, photo.shape[0] - 128, 2)
        crop = torch.from_numpy(photo[top : top + 128, left : left + 128].copy()).permute(2, 0, 1)[None]
        small = torch.nn.functional.interpolate(crop.float(), size=(size, size), mode="area")
        crops.append(small[0].permute(1, 2, 0).round().to(torch.uint8).numpy())
    return np.stack(crops)


def test_int8_model_agrees_with_fp32_and_says_what_it_is(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fp32, int8 = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    export_onnx(Embedder(SMALL).eval(), fp32, {"code_version": "test"})
    images = photo_crops(48, 32)
    agreement = quantize_int8(fp32, int8, images)
    assert 0.99 <= agreement <= 1.0 + 1e-5
    metadata = onnx_metadata(int8)
    assert metadata["precision"] == "int8"
    assert metadata["code_version"] == "test"
    quantized = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    held_out = photo_crops(60, 32)[48:]  # images calibration never saw
    a = quantized.run(None, {INPUT_NAME: held_out})[0]
    b = reference.run(None, {INPUT_NAME: held_out})[0]
    assert np.min(np.sum(a * b, axis=1)) >= 0.98
    # int8 stores weights in a quarter of the bytes.
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size


def test_int8_is_refused_when_it_would_move_embeddings_too_far(tmp_path: Path) -> None:
    fp32, int8 = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    export_onnx(Embedder(SMALL).eval(), fp32, {})
    with pytest.raises(ValueError, match="changes embeddings too much"):
        quantize_int8(fp32, int8, photo_crops(16, 32), min_cosine=1.01)
    assert not int8.exists()


def test_fp16_model_keeps_uint8_in_and_float32_out_and_agrees_with_fp32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fp32, fp16 = tmp_path / "model.onnx", tmp_path / "model.fp16.onnx"
    export_onnx(Embedder(SMALL).eval(), fp32, {"code_version": "test"})
    agreement = convert_fp16(fp32, fp16, photo_crops(16, 32))
    assert 0.99 <= agreement <= 1.0 + 1e-3
    assert onnx_metadata(fp16)["precision"] == "fp16"
    session = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    held_out = photo_crops(24, 32)[16:]
    half = session.run(None, {INPUT_NAME: held_out})[0]
    full = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(
        None, {INPUT_NAME: held_out}
    )[0]
    assert half.dtype == np.float32
    assert np.min(np.sum(half * full, axis=1)) >= 0.99
    # fp16 stores weights in half the bytes.
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size


def scene_crops(count: int, side: int, seed: int = 0) -> np.ndarray:
    """Random crops of four real photographs, resized to side x side. Shape: (count, side, side, 3)"""
    rng = np.random.default_rng(seed)
    photos = [np.asarray(scene(name)) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        top, left = rng.integers(0, photo.shape[0] - 96), rng.integers(0, photo.shape[1] - 96)
        crop = torch.from_numpy(photo[top : top + 96, left : left + 96].copy()).permute(2, 0, 1)[None].float()
        resized = torch.nn.functional.interpolate(crop, size=(side, side), mode="bilinear", antialias=True)
        crops.append(resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.stack(crops)


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    return float((embeddings @ embeddings.T).mean())


def test_principal_components_undo_an_untrained_networks_collapse() -> None:
    model = Embedder(ModelConfig(backbone="resnet10", width=8, input_size=32, embedding_dim=16, pixel_grid=0))
    model.eval()
    images = torch.from_numpy(scene_crops(64, 32))
    with torch.no_grad():
        collapsed = model(images)
        blocks = model.blocks(model.to_unit_range(images))
    assert mean_pairwise_cosine(collapsed) > 0.75  # every random feature shares one direction
    model.fit_principal_components(blocks)
    with torch.no_grad():
        spread = model(images)
        projected = model.represent(model.to_unit_range(images))
    assert mean_pairwise_cosine(spread) < 0.1
    # A centred projection onto decorrelated components of falling variance: PCA's answer.
    assert torch.allclose(projected.mean(dim=0), torch.zeros(16), atol=1e-4)
    covariance = torch.cov(projected.T)
    variances = torch.diagonal(covariance)
    assert torch.all(variances[:-1] >= variances[1:] - 1e-6)
    off_diagonal = covariance - torch.diag(variances)
    assert off_diagonal.abs().max() < 1e-3 * variances.max()


def quadrant_images(count: int, side: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise with one bright square in a random quadrant: the quadrant is the label, and only
    the layout tells them apart. Returns (uint8 (count, side, side, 3), labels (count,))."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (count, side, side, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, count)
    half = side // 2
    for image, label in zip(images, labels, strict=True):
        top, left = half * (label // 2), half * (label % 2)
        image[top + 2 : top + half - 2, left + 2 : left + half - 2] = 255
    return images, labels


def test_pooled_pixels_join_the_features_at_equal_weight_and_keep_layout_apart() -> None:
    model = Embedder(SMALL).eval()  # pixel_grid 8 by default: 192 pooled values beside the features
    images, labels = quadrant_images(80)
    batch = model.to_unit_range(torch.from_numpy(images))
    with torch.no_grad():
        blocks = model.blocks(batch)
    assert [tuple(b.shape) for b in blocks] == [(80, 64), (80, 192)]
    model.fit_principal_components(blocks)
    for index, block in enumerate(blocks):  # each block scaled to unit total variance
        scaled = block * model.block_scale[index]
        assert float(scaled.var(dim=0, unbiased=False).sum()) == pytest.approx(1.0, rel=1e-4)
    with torch.no_grad():
        embeddings = model(torch.from_numpy(images)).numpy()
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    assert np.array_equal(labels[similarity.argmax(axis=1)], labels)  # an untrained network, yet exact


def test_a_checkpoint_from_before_the_pooled_pixels_still_loads(tmp_path: Path) -> None:
    old = Embedder(ModelConfig(backbone="resnet10", width=8, input_size=32, embedding_dim=16, pixel_grid=0))
    path = tmp_path / "old.pt"
    save_checkpoint(path, old.eval(), {})
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["pixel_grid"]  # as written before the field existed
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config.pixel_grid == 0
    images = torch.from_numpy(uint8_batch(3, 32))
    with torch.no_grad():
        assert torch.allclose(loaded(images), old(images), atol=1e-6)
