import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from tasks.metadata import image_metadata
from tests.images import scene


def metadata(image: Image.Image) -> dict[str, float]:
    return image_metadata(np.asarray(image.convert("RGB")))


def test_blurred_copy_is_less_sharp() -> None:
    image = scene("astronaut").resize((256, 256))
    blurred = image.filter(ImageFilter.GaussianBlur(3))
    assert metadata(blurred)["sharpness"] < 0.2 * metadata(image)["sharpness"]


def test_darkened_copy_has_lower_luminance() -> None:
    image = scene("coffee").resize((256, 256))
    darker = ImageEnhance.Brightness(image).enhance(0.4)
    original, dark = metadata(image)["luminance"], metadata(darker)["luminance"]
    assert dark < original
    assert 0 <= dark <= 1
    assert abs(dark / original - 0.4) < 0.05


def test_contrast_and_snr_of_flat_and_busy_images() -> None:
    flat = metadata(Image.new("RGB", (64, 64), (120, 120, 120)))
    busy = metadata(scene("chelsea").resize((128, 128)))
    assert flat["contrast"] == 0
    assert flat["sharpness"] == 0
    assert flat["snr"] == pytest.approx(120)  # mean over a floored deviation of one grey level
    assert busy["contrast"] > 0.05
    assert busy["snr"] < flat["snr"]


def test_uniform_row_ratio_counts_flat_bars() -> None:
    pixels = np.asarray(scene("rocket").resize((100, 100))).copy()
    pixels[60:] = (128, 128, 128)  # the grey bottom of a broken download
    assert metadata(Image.fromarray(pixels))["uniform_row_ratio"] == 0.4
    assert metadata(scene("rocket").resize((100, 100)))["uniform_row_ratio"] == 0
