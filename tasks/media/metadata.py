"""Per-image metadata, from the image as inspection decoded it: no RGB copy made for it.

Inspection decodes a JPEG in the DCT at the smallest scale whose long side is at least
ANALYSIS_SIZE (tasks/media/decode.py), so the decoded image is already small: its long side
lies between ANALYSIS_SIZE and twice that. The measures that count shares of pixels or
rows (uniform_row_ratio, grayscale) are read from it as it is; an image decoded larger
(for a larger model input, or a video frame) is first reduced by a whole factor into that
range. The grey-level measures are read from its luma resized to exactly ANALYSIS_SIZE on
the long side (one channel, a few thousand pixels): sharpness depends on scale, and at one
scale it compares between images of any resolution. Images smaller than ANALYSIS_SIZE are
measured as they are.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tasks.media.decode import draft_size, reduced

ANALYSIS_SIZE = 128

# A row counts as uniform when no channel varies by more than this (of 255) along it.
UNIFORM_ROW_TOLERANCE = 2

# Pixels whose channels differ by at most this (of 255) count as grey (JPEG chroma noise).
GRAY_TOLERANCE = 6

GREY_LEVELS = np.arange(256, dtype=np.float64)


def analysis_luma(image: Image.Image) -> Image.Image:
    """Rec. 601 luma (Pillow's integer form), its long side resized to ANALYSIS_SIZE if longer."""
    gray = image.convert("L")
    width, height = gray.size
    scale = ANALYSIS_SIZE / max(width, height)
    if scale >= 1:
        return gray
    return gray.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR
    )


def histogram_statistics(histogram: np.ndarray) -> dict[str, float]:
    """Luminance, contrast, snr and entropy from a 256-bin luma histogram.

    luminance: mean brightness in [0, 1]. contrast: RMS contrast, the standard deviation of
    luma / 255, in [0, 0.5]. snr: mean over standard deviation, the deviation floored at
    one grey level so a flat image has a large, finite value. entropy: Shannon entropy of
    the histogram in bits, 0 to 8: how much an image can say.
    """
    shares = histogram / histogram.sum()
    mean = float(shares @ GREY_LEVELS)
    deviation = float(np.sqrt(max(float(shares @ (GREY_LEVELS - mean) ** 2), 0.0)))
    present = shares[shares > 0]
    return {
        "luminance": mean / 255.0,
        "contrast": deviation / 255.0,
        "snr": mean / max(deviation, 1.0),
        "entropy": float(-(present * np.log2(present)).sum()),
    }


def calc_sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of luma (Pech-Pacheco et al., 2000).

    Blur removes high frequencies, so a blurred copy scores lower.
    """
    if min(gray.shape) < 3:
        return 0.0
    laplacian = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1]
    return float(laplacian.var())


def channel_planes(image: Image.Image) -> np.ndarray:
    """The RGB image as (H, 3, W) uint8: each row's three channels contiguous.

    numpy reduces over the 3-long, strided channel axis of (H, W, 3) about 50x slower than
    over a contiguous axis, so the colour measures read this layout.
    """
    return np.ascontiguousarray(np.asarray(image).transpose(0, 2, 1))


def calc_uniform_row_ratio(planes: np.ndarray) -> float:
    """Share of rows whose pixels are all (nearly) the same colour. Shape: planes (H, 3, W).

    Such rows are the grey or coloured bars of a truncated download or a broken frame.
    """
    # uint8 throughout: a maximum minus its minimum never wraps.
    spread = (planes.max(axis=2) - planes.min(axis=2)).max(axis=1)  # (H,)
    return float(np.mean(spread <= UNIFORM_ROW_TOLERANCE))


def calc_grayscale(planes: np.ndarray) -> float:
    """1.0 when (nearly) every pixel has equal channels, else 0.0. Shape: planes (H, 3, W)."""
    spread = planes.max(axis=1) - planes.min(axis=1)  # (H, W), uint8: it never wraps
    return float(np.mean(spread <= GRAY_TOLERANCE) >= 0.99)


def image_metadata(image: Image.Image) -> dict[str, float]:
    """Every metadata value of the RGB `image`, by name (luminance, contrast, sharpness, ...)."""
    colour = reduced(image, draft_size(image.size, 1, ANALYSIS_SIZE))  # itself when already small
    gray = analysis_luma(colour)
    planes = channel_planes(colour)
    return {
        **histogram_statistics(np.asarray(gray.histogram(), dtype=np.float64)),
        "sharpness": calc_sharpness(np.asarray(gray, dtype=np.float32)),
        "uniform_row_ratio": calc_uniform_row_ratio(planes),
        "grayscale": calc_grayscale(planes),
    }
