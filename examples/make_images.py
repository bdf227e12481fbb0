"""Rebuild examples/images: crops of the photographs scikit-image ships (BSD licensed).

Ten scenes, four crops each, in a folder per scene, plus what a real upload contains:
an exact copy, a truncated JPEG, a text file with an image's name, and a short video (a
camera panning across a photograph). Run from the repo root:
`python examples/make_images.py` (needs scikit-image, a test dependency).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import av
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


def write_scene_crops(
    root: Path, scenes: tuple[str, ...], per_scene: int, side: int, seed: int = 0
) -> list[str]:
    """Square crops of scikit-image's photographs as JPEGs, a folder per scene.

    Returns the keys written, relative to `root`. Also used by the tests.
    """
    rng = np.random.default_rng(seed)
    keys = []
    for name in scenes:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_scene):
            crop_side = int(min(image.size) * rng.uniform(0.5, 0.9))
            left = int(rng.integers(0, image.width - crop_side + 1))
            top = int(rng.integers(0, image.height - crop_side + 1))
            crop = image.crop((left, top, left + crop_side, top + crop_side)).resize((side, side))
            key = f"{name}/{index:02d}.jpg"
            crop.save(root / key, quality=85)
            keys.append(key)
    return keys


def main(root: Path = Path(__file__).parent / "images") -> None:
    shutil.rmtree(root, ignore_errors=True)
    write_scene_crops(root, SCENES, CROPS_PER_SCENE, SIDE)
    shutil.copyfile(root / "coffee" / "00.jpg", root / "coffee" / "00-copy.jpg")
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((SIDE, SIDE)).save(buffer, "JPEG")
    (root / "broken").mkdir()
    (root / "broken" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    (root / "broken" / "notes.png").write_text("not an image, despite the name\n")
    write_pan_clip(root / "clips" / "pan.mp4")


def write_pan_clip(path: Path, seconds: int = 4, rate: int = 5) -> None:
    """An H.264 clip of a square window panning across the rocket photograph."""
    image = np.asarray(Image.fromarray(data.rocket()).convert("RGB"))
    side = min(image.shape[:2])
    frames = seconds * rate
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            left = (image.shape[1] - side) * index // (frames - 1)
            window = Image.fromarray(image[:side, left : left + side]).resize((SIDE, SIDE))
            frame = av.VideoFrame.from_ndarray(np.asarray(window), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


if __name__ == "__main__":
    main()
