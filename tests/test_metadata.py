import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from tasks.media.flags import sample_flags
from tasks.media.metadata import image_metadata
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


def test_entropy_and_grayscale() -> None:
    flat = metadata(Image.new("RGB", (64, 64), (120, 120, 120)))
    photo = metadata(scene("chelsea").resize((128, 128)))
    assert flat["entropy"] == 0 and photo["entropy"] > 5
    assert metadata(scene("camera").resize((128, 128)))["grayscale"] == 1.0  # a grey photograph
    assert photo["grayscale"] == 0.0


def flags_of(image: Image.Image) -> list[str]:
    rgb = np.asarray(image.convert("RGB"))
    return sample_flags({**image_metadata(rgb), "width": image.width, "height": image.height})


def test_built_in_flags_on_real_images() -> None:
    photo = scene("coffee").resize((256, 256))
    assert flags_of(photo) == []
    assert flags_of(ImageEnhance.Brightness(photo).enhance(0.2)) == ["dark"]
    assert "blurry" in flags_of(photo.filter(ImageFilter.GaussianBlur(4)))
    washed_out = Image.blend(photo, Image.new("RGB", photo.size, (255, 255, 255)), 0.85)
    assert "bright" in flags_of(washed_out)
    assert "grayscale" in flags_of(scene("camera").resize((256, 256)))
    assert "low_information" in flags_of(Image.new("RGB", (64, 64), (40, 90, 200)))
    assert "odd_aspect_ratio" in flags_of(scene("rocket").resize((400, 100)))
    assert "odd_size" in flags_of(scene("rocket").resize((24, 24)))
