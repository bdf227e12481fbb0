"""The CPU part of inspecting an image, from its bytes: hash, decode, metadata, the model's pixels.

It runs in the inspecting thread, or in a decoding process (tasks/media/processes.py), so
it imports only what that needs: a process starts in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tasks.media.decode import Corrupt, decode_image, resize_square
from tasks.media.flags import sample_flags
from tasks.media.metadata import ANALYSIS_SIZE, image_metadata
from tasks.records.samples import STATUS_CORRUPT, STATUS_OK

# Every JPEG starts with these bytes (SOI, then a marker).
JPEG_MAGIC = b"\xff\xd8\xff"

# A decoding process holds one image at a time, with no budget shared between processes.
# A file of another format than JPEG (which decodes reduced in the DCT) with more pixels
# than this is decoded in the inspecting process instead, under its shared pixel budget:
# about 50 MB of RGB a process at most.
PROCESS_PIXELS = 16_000_000


@dataclass(frozen=True)
class Examined:
    """A sample row's measured fields (and, for a clean sample, its pixels at model resolution)."""

    fields: dict[str, object]
    pixels: np.ndarray | None


def measured(rgb: Image.Image, width: int, height: int, input_size: int) -> Examined:
    """A clean sample's size, metadata and flags, and its pixels at model resolution.

    `width` and `height` are the original's (`rgb` may be reduced).
    """
    metadata = image_metadata(rgb)
    size = {"width": width, "height": height}
    fields = {"status": STATUS_OK, **size, **metadata, "flags": sample_flags(metadata | size)}
    return Examined(fields, resize_square(rgb, input_size))


def bytes_hash(data: bytes) -> str:
    """The 16-byte BLAKE2b hex digest of a file's bytes: what finds exact duplicates and moved files."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def examine_image(data: bytes, max_pixels: int, input_size: int, jpeg_decoder: str = "pillow") -> Examined:
    """Hash, decode and measure one file's bytes. Never raises for a bad file."""
    fields: dict[str, object] = {"bytes": len(data), "content_hash": bytes_hash(data)}
    decoded = decode_image(data, max_pixels, input_size, ANALYSIS_SIZE, jpeg_decoder)
    if isinstance(decoded, Corrupt):
        return Examined(fields | {"status": STATUS_CORRUPT, "reason": decoded.reason}, None)
    result = measured(decoded.rgb, decoded.width, decoded.height, input_size)
    return Examined(fields | result.fields, result.pixels)


def examine_images(files: list[bytes], max_pixels: int, input_size: int, jpeg_decoder: str) -> list[Examined]:
    """`examine_image` over several files: one call to a decoding process a batch."""
    return [examine_image(data, max_pixels, input_size, jpeg_decoder) for data in files]


def fits_a_process(data: bytes) -> bool:
    """Whether a decoding process may take this file: a JPEG, or an image of at most PROCESS_PIXELS.

    A file whose header cannot be read goes to a process too, which records why.
    """
    if data.startswith(JPEG_MAGIC):
        return True
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError):
        return True
    return width * height <= PROCESS_PIXELS
