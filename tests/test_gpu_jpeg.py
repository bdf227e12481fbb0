"""checks.jpeg_decoder: nvimgcodec, run on nvImageCodec's CPU backend (these machines have no
GPU): the pixels of a full Pillow decode, reduced; bad files still recorded with Pillow's
reasons; and inspection in decoding processes gives the rows the default decoder gives."""

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tasks.config import ChecksConfig, VideoConfig
from tasks.media.decode import Corrupt, Decoded, decode_image, reduced
from tasks.media.gpu_jpeg import decode_jpeg, gpu_unusable
from tasks.media.inspection import inspect_shard_files
from tasks.media.processes import decoding_in_processes
from tasks.model_runtime.gpu import nvidia_gpu_count
from tasks.records.samples import IMAGES_FILE, SAMPLES_FILE
from tasks.storage.local import LocalStorage
from tests.images import jpeg_bytes, scene, write_bad_files, write_scene_crops

LIMIT = 10_000_000


def nvimgcodec_decoded(data: bytes, min_side: int, min_long_side: int = 0) -> Decoded:
    result = decode_image(data, LIMIT, min_side, min_long_side, jpeg_decoder="nvimgcodec")
    assert isinstance(result, Decoded), result
    return result


def test_a_jpeg_decodes_to_the_full_pillow_decode_reduced_and_keeps_its_size() -> None:
    photo = scene("astronaut").resize((640, 480))
    data = jpeg_bytes(photo, quality=90)
    result = nvimgcodec_decoded(data, min_side=64, min_long_side=128)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    # The largest whole factor keeping 128 x 64: 5, so 128 x 96, box-averaged.
    expected = reduced(full, (128, 64))
    assert (result.width, result.height) == (640, 480)
    assert result.rgb.size == expected.size == (128, 96)
    assert np.array_equal(np.asarray(result.rgb), np.asarray(expected))
    # The default decoder reduces in the DCT instead: close, not equal.
    pillow = decode_image(data, LIMIT, 64, 128)
    assert isinstance(pillow, Decoded)
    assert (pillow.width, pillow.height) == (640, 480)


def test_a_phones_multi_picture_jpeg_decodes_its_first_picture() -> None:
    first, second = scene("astronaut").resize((640, 480)), scene("coffee").resize((640, 480))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    result = nvimgcodec_decoded(buffer.getvalue(), min_side=64, min_long_side=128)
    full = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")  # the first picture
    assert np.array_equal(np.asarray(result.rgb), np.asarray(reduced(full, (128, 64))))


def test_exif_orientation_is_applied_once() -> None:
    image = Image.new("RGB", (80, 40), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 40, 40))  # blue left half
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the blue half on top
    result = nvimgcodec_decoded(jpeg_bytes(image, exif=exif, quality=95), min_side=8)
    assert (result.width, result.height) == (40, 80)
    pixels = np.asarray(result.rgb)
    assert pixels.shape[:2] == (pixels.shape[0], pixels.shape[0] // 2)
    top, bottom = pixels[: len(pixels) // 4].mean(axis=(0, 1)), pixels[-len(pixels) // 4 :].mean(axis=(0, 1))
    assert top[2] > 200 > top[0] and bottom[0] > 200 > bottom[2]


def test_a_file_it_cannot_decode_gets_pillows_reason() -> None:
    good = jpeg_bytes(scene("coffee").resize((64, 64)))
    bad = {
        "truncated": good[: len(good) // 3],
        "headers only": good[:300],
        "garbage": b"\xff\xd8\xff" + bytes(500),
    }
    for name, data in bad.items():
        result = decode_image(data, LIMIT, 32, jpeg_decoder="nvimgcodec")
        assert isinstance(result, Corrupt), name
        assert result == decode_image(data, LIMIT, 32), name
    truncated = decode_image(bad["truncated"], LIMIT, 32, jpeg_decoder="nvimgcodec")
    assert isinstance(truncated, Corrupt) and "truncated" in truncated.reason


@pytest.mark.skipif(nvidia_gpu_count() > 0, reason="this machine has a GPU")
def test_without_a_gpu_it_says_it_decodes_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    gpu_unusable.cache_clear()
    with caplog.at_level(logging.WARNING):
        assert gpu_unusable() is not None
    assert "cannot use a GPU here" in caplog.text and "CPU backend" in caplog.text


def test_threads_decoding_at_once_each_get_their_image() -> None:
    data = jpeg_bytes(scene("astronaut").resize((320, 240)))
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(lambda _: decode_jpeg(data), range(200)))
    assert all(pixels is not None and np.array_equal(pixels, expected) for pixels in decoded)


def inspected(root: Path, out: Path, decoder: str) -> tuple[list[dict[str, object]], np.ndarray]:
    """Inspect `root` as one shard in two decoding processes: (rows by key, the uint8 cache)."""
    storage = LocalStorage(root)
    out.mkdir()
    checks = ChecksConfig(jpeg_decoder=decoder)
    with decoding_in_processes(2):
        inspect_shard_files(list(storage.list_objects()), 0, storage, 32, checks, VideoConfig(), out)
    rows = sorted(pq.read_table(out / SAMPLES_FILE).to_pylist(), key=lambda row: str(row["key"]))
    return rows, np.frombuffer((out / IMAGES_FILE).read_bytes(), dtype=np.uint8)


def test_inspection_with_it_gives_the_default_rows_and_nearly_its_pixels(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_scene_crops(root, per_scene=4, side=512)
    scene("coffee").save(root / "coffee.png")  # not a JPEG: Pillow decodes it either way
    reasons = write_bad_files(root)
    default_rows, default_pixels = inspected(root, tmp_path / "pillow", "pillow")
    rows, pixels = inspected(root, tmp_path / "nvimgcodec", "nvimgcodec")

    same = ("key", "status", "reason", "width", "height", "bytes", "content_hash")
    assert [{k: r[k] for k in same} for r in rows] == [{k: r[k] for k in same} for r in default_rows]
    by_key = {str(row["key"]): row for row in rows}
    for key, word in reasons.items():
        assert word in str(by_key[key]["reason"])
    assert sum(row["status"] == "ok" for row in rows) == len(rows) - len(reasons)
    # Reduced by box averaging from full scale instead of in the DCT (512 px to 128 either
    # way): the model's pixels differ, by under a grey level on average.
    assert pixels.shape == default_pixels.shape
    assert 0 < np.abs(pixels.astype(np.int16) - default_pixels).mean() < 1
