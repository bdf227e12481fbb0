"""Labelled real image sets for the selection-quality benchmark, built from installed packages.

A selection is worth more the better its picks stand for the whole set, and with labels that
can be measured: label every image by its nearest pick and count how often that is right.
These sets carry labels without any download at run time:

- `digits`: scikit-learn's 1,797 handwritten digits (10 labels);
- `photo_crops`: random square crops of 20 natural photographs shipped inside scikit-image
  and scikit-learn, labelled by the photo each comes from.

Each writer puts flat files into a folder (the product reads an image's first folder as
metadata, so labels stay out of the paths) and returns {key relative to the folder: label}.
`raw_pixels` is the representation baseline: embeddings any learned model must beat.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from sklearn.datasets import load_digits, load_sample_image

DIGIT_SIDE = 32
CROP_SIDE = 64
# Crop sides as shares of a photo's shorter side.
CROP_SHARE = (0.25, 0.5)
# scikit-image photographs that load offline (the ones its pooch registry downloads, such as
# eagle, lily or kidney, are left out); cat is chelsea again, horse a binary silhouette.
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    **{name: getattr(data, name) for name in SKIMAGE_PHOTOS},
    "motorcycle": lambda: data.stereo_motorcycle()[0],  # the left view of the stereo pair
    "china": partial(load_sample_image, "china.jpg"),
    "flower": partial(load_sample_image, "flower.jpg"),
}


def write_digits(folder: Path) -> dict[str, str]:
    """scikit-learn's digits as 32x32 RGB PNGs, `digit_<row>.png`, row as in `load_digits`.

    Each 8x8 value (0-16) counts the set pixels of a 4x4 block of the original 32x32 bitmap,
    so nearest-neighbour upscaling by 4 spreads each count back over the block it came from;
    bilinear would draw smooth strokes the data does not have.
    """
    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    scale = DIGIT_SIDE // digits.images.shape[1]
    labels = {}
    for row, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        grey = np.rint(image * (255 / 16)).astype(np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)
        key = f"digit_{row:04d}.png"
        Image.fromarray(grey).convert("RGB").save(folder / key)
        labels[key] = str(target)
    return labels


def load_photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(load()).convert("RGB") for name, load in PHOTOS.items()}


def random_square(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A square of CROP_SHARE of the shorter side, at a random place, resized to CROP_SIDE."""
    side = int(min(image.size) * rng.uniform(*CROP_SHARE))
    left = int(rng.integers(0, image.width - side + 1))
    top = int(rng.integers(0, image.height - side + 1))
    return image.crop((left, top, left + side, top + side)).resize(
        (CROP_SIDE, CROP_SIDE), Image.Resampling.BILINEAR
    )


def write_photo_crops(folder: Path, crops: int = 300, seed: int = 0) -> dict[str, str]:
    """`crops` seeded random crops of PHOTOS as 64x64 RGB PNGs, `crop_<index>.png`, labelled
    by photo. Photos get equal shares (within one), dealt in a seeded shuffled order so that
    a crop's index says nothing of its photo."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = load_photos()
    names = list(photos)
    rng = np.random.default_rng(seed)
    dealt = rng.permutation(np.arange(crops) % len(names))
    labels = {}
    for index, photo in enumerate(dealt):
        key = f"crop_{index:04d}.png"
        random_square(photos[names[photo]], rng).save(folder / key)
        labels[key] = names[photo]
    return labels


def pixels(path: Path, size: int) -> np.ndarray:
    """An image file as size x size RGB uint8 pixels. Shape: (size, size, 3)"""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def raw_pixels(folder: Path, keys: list[str], size: int = 16) -> np.ndarray:
    """Each image as its size x size RGB pixels, centred by the mean image and L2-normalised
    per row: the representation baseline. Shape: (len(keys), size * size * 3) float32."""
    x = np.stack([pixels(folder / key, size) for key in keys]).reshape(len(keys), -1).astype(np.float32) / 255
    x -= x.mean(axis=0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


SETS: dict[str, Callable[[Path], dict[str, str]]] = {"digits": write_digits, "photo_crops": write_photo_crops}
