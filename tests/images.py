"""Test images: crops of the photographs scikit-image ships, and the bad files of a real upload."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

SCENES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")


def scene(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def write_scene_crops(root: Path, per_scene: int, side: int = 64, seed: int = 0) -> list[str]:
    """Crops of scikit-image's photographs as JPEGs, a folder per scene. Returns the keys."""
    rng = np.random.default_rng(seed)
    keys = []
    for name in SCENES:
        image = scene(name)
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_scene):
            crop_side = int(min(image.size) * rng.uniform(0.4, 0.8))
            left = int(rng.integers(0, image.width - crop_side + 1))
            top = int(rng.integers(0, image.height - crop_side + 1))
            crop = image.crop((left, top, left + crop_side, top + crop_side)).resize((side, side))
            key = f"{name}/{index:02d}.jpg"
            crop.save(root / key, quality=90)
            keys.append(key)
    return keys


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
