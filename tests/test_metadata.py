import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from tasks.media.decode import Corrupt, decode_image
from tasks.media.flags import sample_flags
from tasks.media.metadata import ANALYSIS_SIZE, image_metadata
from tests.images import scene


def metadata(image: Image.Image) -> dict[str, float]:
    return image_metadata(image.convert("RGB"))


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
    return sample_flags(
        {**image_metadata(image.convert("RGB")), "width": image.width, "height": image.height}
    )


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


def inspected(image: Image.Image, size: tuple[int, int], blur: float = 0.0) -> dict[str, float]:
    """The metadata and flags of `image` at `size` (blurred by a Gaussian of `blur` px), saved
    as a JPEG and decoded as inspection decodes it."""
    buffer = io.BytesIO()
    image.resize(size).filter(ImageFilter.GaussianBlur(blur)).save(buffer, "JPEG", quality=90)
    decoded = decode_image(buffer.getvalue(), 10**9, 64, ANALYSIS_SIZE)
    assert not isinstance(decoded, Corrupt)
    metadata = image_metadata(decoded.rgb)
    return {**metadata, "blurry": float("blurry" in sample_flags({**metadata, "width": 1, "height": 1}))}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket", "camera"])
def test_metadata_agree_across_resolutions_and_blur_is_flagged_at_each(name: str) -> None:
    """Inspection decodes a JPEG at the smallest DCT scale that keeps 128 px on the long
    side (160 px for 640 and 1,280 wide, 250 for 1,000 wide), and measures luma at 128 px:
    one photograph scores alike at every resolution, and blurred by 1.6% of its width it
    is flagged blurry at every one."""
    photo = scene(name).convert("RGB")
    sizes = [(640, 480), (1000, 750), (1280, 960), (4000, 3000)]
    sharp = [inspected(photo, size) for size in sizes]
    values = [m["sharpness"] for m in sharp]
    assert max(values) < 1.3 * min(values) and min(values) > 100
    assert max(m["luminance"] for m in sharp) - min(m["luminance"] for m in sharp) < 0.01
    assert not any(m["blurry"] for m in sharp)
    assert all(inspected(photo, size, 0.016 * size[0])["blurry"] for size in sizes)
