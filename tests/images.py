"""Test images: crops of the photographs scikit-image ships, and the bad files of a real upload."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from skimage import data

from examples.make_images import write_scene_crops as write_example_crops

SCENES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")


def scene(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def write_scene_crops(root: Path, per_scene: int, side: int = 64) -> list[str]:
    """Crops of scikit-image's photographs as JPEGs, a folder per scene. Returns the keys."""
    return write_example_crops(root, SCENES, per_scene, side)


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def write_bad_files(root: Path) -> dict[str, str]:
    """Files a real upload contains. Returns {key: a word the recorded reason must contain}."""
    (root / "bad").mkdir(parents=True, exist_ok=True)
    good = jpeg_bytes(scene("coffee").resize((64, 64)))
    (root / "bad" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "bad" / "empty.png").write_bytes(b"")
    (root / "bad" / "text.jpg").write_text("this is not an image")
    return {"bad/truncated.jpg": "truncated", "bad/empty.png": "zero-byte", "bad/text.jpg": "not an image"}
