"""Rebuild examples/images: crops of the photographs scikit-image ships (BSD licensed).

Ten scenes, four crops each, in a folder per scene, plus what a real upload contains:
an exact copy, a truncated JPEG and a text file with an image's name. Run from the repo
root: `python examples/make_images.py` (needs scikit-image, a test dependency).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

SCENES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "camera",
    "brick",
    "grass",
)
CROPS_PER_SCENE = 4
SIDE = 96


def scene_crops(image: np.ndarray, count: int, rng: np.random.Generator) -> list[Image.Image]:
    rgb = Image.fromarray(image).convert("RGB")
    crops = []
    for _ in range(count):
        side = int(min(rgb.size) * rng.uniform(0.5, 0.9))
        left = int(rng.integers(0, rgb.width - side + 1))
        top = int(rng.integers(0, rgb.height - side + 1))
        crops.append(rgb.crop((left, top, left + side, top + side)).resize((SIDE, SIDE)))
    return crops


def main(root: Path = Path(__file__).parent / "images") -> None:
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for scene in SCENES:
        folder = root / scene
        folder.mkdir(parents=True)
        for index, crop in enumerate(scene_crops(getattr(data, scene)(), CROPS_PER_SCENE, rng)):
            crop.save(folder / f"{index:02d}.jpg", quality=85)
    shutil.copyfile(root / "coffee" / "00.jpg", root / "coffee" / "00-copy.jpg")
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((SIDE, SIDE)).save(buffer, "JPEG")
    (root / "broken").mkdir()
    (root / "broken" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    (root / "broken" / "notes.png").write_text("not an image, despite the name\n")


if __name__ == "__main__":
    main()
