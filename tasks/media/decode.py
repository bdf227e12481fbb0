"""Decode one image file into RGB, once, or say why it cannot be.

A bad file is a value (`Corrupt` with its reason), never an exception: the caller records
it and moves on.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tasks.media.budget import DECODE_PIXELS, PixelBudget
from tasks.media.gpu_jpeg import decode_jpeg

# Pillow's names for JPEG files: MPO is a phone's JPEG with more pictures after the first.
JPEG_FORMATS = frozenset({"JPEG", "MPO"})

# EXIF orientations that rotate by 90 degrees and so swap width and height.
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})

EXIF_ORIENTATION = 0x0112

# Pillow enforces its own bomb limit at twice MAX_IMAGE_PIXELS; winnow checks the
# configured limit itself, so Pillow's must never be the lower one.
Image.MAX_IMAGE_PIXELS = None

# Modes Image.reduce handles (not palette images, which are converted first).
REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "RGBa", "La", "I", "F", "CMYK", "YCbCr", "I;16"})
# Every decoding thread of the process draws on it.
DECODE_BUDGET = PixelBudget(DECODE_PIXELS)
# Pillow allocates an image in blocks (16 MiB by default), which glibc serves from each
# thread's own arena and keeps there once freed: eight 13,000 x 13,000 PNGs decoded in
# turn by eight threads held 4.6 GB. Blocks above glibc's largest mmap threshold (32 MiB)
# are mapped and unmapped afresh, so a decoded image's memory goes back when it is freed
# (peak 0.8 GB for the same eight).
Image.core.set_block_size(64 * 2**20)


@dataclass(frozen=True)
class Decoded:
    """An image decoded, maybe at reduced scale.

    `rgb` keeps at least the `min_side` and `min_long_side` the caller asked for, or the
    original size if smaller; width and height are the original's, after EXIF orientation.
    """

    rgb: Image.Image
    width: int
    height: int


@dataclass(frozen=True)
class Corrupt:
    """A file (or video) that cannot be decoded or is rejected, and the reason why."""

    reason: str


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit and float scaled, alpha composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data: the top byte is the 8-bit value.
        return Image.fromarray((np.clip(values, 0, 65535) / 257).round().astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.round().astype(np.uint8)).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def draft_size(size: tuple[int, int], min_side: int, min_long_side: int) -> tuple[int, int]:
    """The smallest (width, height) a reduced decode of an image of `size` may have.

    That is `min_side` on its short side and `min_long_side` on its long side.

    Pillow's draft keeps both sides at or above the size it is given, so a square request
    would hold a 640x480 photograph at full scale for a 256-pixel analysis copy that only
    needs its long side at 256; oriented like the image, half scale (320x240) qualifies.
    """
    long_side = max(min_side, min_long_side)
    return (long_side, min_side) if size[0] >= size[1] else (min_side, long_side)


def reduced(image: Image.Image, needed: tuple[int, int]) -> Image.Image:
    """`image` shrunk by the largest whole factor that keeps `needed` (width, height), by box averaging.

    Nothing is done for a mode Pillow cannot reduce (palette), or when no factor of 2 or more fits.
    """
    factor = min(image.size[0] // max(needed[0], 1), image.size[1] // max(needed[1], 1))
    if factor < 2 or image.mode not in REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


def decode_image(
    data: bytes, max_pixels: int, min_side: int, min_long_side: int = 0, jpeg_decoder: str = "pillow"
) -> Decoded | Corrupt:
    """Decode `data`, reducing JPEGs in the DCT (Pillow's draft mode).

    JPEGs are reduced as far as the sides the caller needs allow.

    Args:
        data: the file's bytes.
        max_pixels: larger images are rejected as decompression bombs before decoding.
        min_side: the short side the caller needs (a square resize to it must not upscale).
        min_long_side: the long side the caller needs (an aspect-keeping copy of that size).
        jpeg_decoder: pillow, or nvimgcodec: JPEGs decoded at full scale by nvImageCodec
            (tasks/media/gpu_jpeg.py), then reduced by box averaging as far as those sides allow.
    """
    if not data:
        return Corrupt("zero-byte file")
    try:
        with warnings.catch_warnings():
            # Pillow warns about EXIF and palette quirks it handles itself.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                return Corrupt(
                    f"decompression bomb: {width}x{height} = {width * height} pixels exceeds "
                    f"max_image_pixels {max_pixels}"
                )
            # A PNG or TIFF has no reduced decode: its full size is held while it decodes (a
            # PNG's EXIF is read after its pixels), so the process's threads share a pixel
            # budget, and the image is reduced at once, before any conversion copies it.
            with DECODE_BUDGET.reserve(width * height):
                if image.getexif().get(EXIF_ORIENTATION) in TRANSPOSING_ORIENTATIONS:
                    width, height = height, width
                gpu_decodes = jpeg_decoder == "nvimgcodec" and image.format in JPEG_FORMATS
                pixels = decode_jpeg(data) if gpu_decodes else None
                if pixels is not None:  # already turned as its EXIF says
                    full = Image.fromarray(pixels)
                    rgb = reduced(full, draft_size(full.size, min_side, min_long_side))
                else:
                    needed = draft_size(image.size, min_side, min_long_side)
                    image.draft("RGB", needed)
                    image.load()
                    # In place: the image is this call's own, and a copy a step costs more
                    # than the transposition at a small decoded size.
                    small = reduced(image, needed)
                    ImageOps.exif_transpose(small, in_place=True)
                    rgb = small if small.mode == "RGB" else _to_rgb(small)
    except UnidentifiedImageError:
        return Corrupt("not an image: unrecognised file format")
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError) as error:
        # Pillow signals truncated and malformed data through these, in varying words.
        if "truncated" in str(error).lower():
            return Corrupt(f"truncated file: {error}")
        return Corrupt(f"cannot decode: {error}")
    if width == 0 or height == 0:
        return Corrupt("image has zero width or height")
    return Decoded(rgb=rgb, width=width, height=height)


def resize_square(image: Image.Image, side: int) -> np.ndarray:
    """Resize (aspect ratio not kept, as the model sees every image whole) to (side, side, 3)."""
    resized = image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)
