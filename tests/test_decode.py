import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.media.decode import Corrupt, Decoded, decode_image
from tests.images import jpeg_bytes, scene

LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def scrambled(data: bytes) -> bytes:
    """Damage in the middle of the data stream, as a bad disk or transfer leaves it."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 32]) + data[middle + 32 :]


def decoded(data: bytes, min_side: int = 32, min_long_side: int = 0) -> Decoded:
    result = decode_image(data, LIMIT, min_side, min_long_side)
    assert isinstance(result, Decoded), result
    return result


def test_exif_orientation_is_applied_and_reported() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # blue left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    result = decoded(encode(image, "JPEG", exif=exif, quality=95))
    assert (result.width, result.height) == (20, 40)
    pixels = np.asarray(result.rgb)
    assert pixels.shape == (40, 20, 3)
    # Rotated clockwise, the blue left half becomes the top half.
    assert pixels[5, 10, 2] > 200 and pixels[35, 10, 0] > 200


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("L", "PNG"),
        ("1", "BMP"),
        ("CMYK", "JPEG"),
        ("RGB", "WEBP"),
        ("RGB", "TIFF"),
        ("P", "GIF"),
    ],
)
def test_every_mode_becomes_rgb(mode: str, fmt: str) -> None:
    image = scene("chelsea").resize((48, 32)).convert(mode)
    result = decoded(encode(image, fmt))
    assert result.rgb.mode == "RGB"
    assert (result.width, result.height) == (48, 32)


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert np.asarray(decoded(encode(image, "PNG")).rgb).min() == 255


def test_sixteen_bit_grayscale_keeps_its_range() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (8, 1))
    result = decoded(encode(Image.fromarray(ramp), "PNG"))
    pixels = np.asarray(result.rgb)[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255
    assert np.all(np.diff(pixels[0].astype(int)) >= 0)


def test_large_jpeg_is_decoded_reduced_but_reports_its_size() -> None:
    big = scene("astronaut").resize((2048, 1536))
    result = decoded(jpeg_bytes(big), min_side=256)
    assert (result.width, result.height) == (2048, 1536)
    assert 256 <= min(result.rgb.size) < 1536


@pytest.mark.parametrize("size", [(640, 480), (480, 640)])
def test_photo_is_decoded_at_half_scale_when_its_long_side_suffices(size: tuple[int, int]) -> None:
    # The analysis copy needs 256 on the long side and the model 64 on the short: half of
    # 640x480 (320x240) holds both, though its short side is under 256.
    result = decoded(jpeg_bytes(scene("astronaut").resize(size)), min_side=64, min_long_side=256)
    assert (result.width, result.height) == size
    assert result.rgb.size == (size[0] // 2, size[1] // 2)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "zero-byte"),
        (encode(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG")[:60], "truncated file"),
        (scrambled(encode(scene("coffee").resize((64, 64)), "PNG")), "cannot decode"),
        (b"plain text pretending to be a picture", "not an image"),
    ],
)
def test_bad_files_are_values_with_reasons(data: bytes, reason: str) -> None:
    result = decode_image(data, LIMIT, 32)
    assert isinstance(result, Corrupt)
    assert reason in result.reason


def test_truncated_jpeg_is_corrupt() -> None:
    data = jpeg_bytes(scene("coffee").resize((128, 128)))
    result = decode_image(data[: len(data) // 2], LIMIT, 32)
    assert isinstance(result, Corrupt) and "truncated" in result.reason


def test_decompression_bomb_is_rejected_before_decoding() -> None:
    result = decode_image(encode(Image.new("L", (400, 300)), "PNG"), max_pixels=100_000, min_side=32)
    assert isinstance(result, Corrupt)
    assert "decompression bomb" in result.reason and "120000" in result.reason


PEAK_PROBE = """
import resource, sys
from pathlib import Path
from tasks.config import ChecksConfig, VideoConfig
from tasks.media.inspection import inspect_shard_files
from tasks.storage.local import LocalStorage
storage = LocalStorage(Path(sys.argv[1]))
ok, corrupt = inspect_shard_files(
    list(storage.list_objects()), 0, storage, 64, ChecksConfig(), VideoConfig(), Path(sys.argv[2])
)
print(ok, corrupt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_eight_huge_pngs_are_inspected_within_three_gigabytes(tmp_path: Path) -> None:
    """A PNG has no reduced decode: 13,000 x 13,000 ones drove a run past 12 GB, and one alone
    peaked at 2.6 GB. Decoding shares a pixel budget and reduces each image at once."""
    side = 13_000
    gradient = np.zeros((side, side, 3), np.uint8)
    gradient[..., 0] = np.arange(side, dtype=np.uint64)[None, :] % 256
    gradient[..., 1] = np.arange(side, dtype=np.uint64)[:, None] % 256
    folder = tmp_path / "huge"
    folder.mkdir()
    Image.fromarray(gradient).save(folder / "0.png", compress_level=1)
    del gradient
    for copy in range(1, 8):
        shutil.copyfile(folder / "0.png", folder / f"{copy}.png")
    (tmp_path / "inspected").mkdir()
    probe = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(folder), str(tmp_path / "inspected")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    ok, corrupt, peak_mib = map(int, probe.stdout.split())
    assert (ok, corrupt) == (8, 0)
    assert peak_mib < 3 * 1024, f"peak RSS {peak_mib} MiB"
