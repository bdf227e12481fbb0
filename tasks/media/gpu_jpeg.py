"""JPEG decoding by NVIDIA nvImageCodec: nvJPEG on a GPU, for machines whose cores are the limit.

Inspection decodes JPEGs with Pillow by default, reduced in the DCT. With
`checks.jpeg_decoder: nvimgcodec` the decode itself moves to the GPU (its hardware JPEG
engines where it has them, as A100, H100 and H200 do), at full scale; the host then only
reduces the decoded image. Without a usable GPU nvImageCodec decodes on its CPU backend
(libjpeg-turbo, the same pixels as a full Pillow decode), slower than Pillow's reduced
decode: there the option is for checking, not for speed.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'winnow[gpu-decode]' (nvidia-nvimgcodec-cu13 and nvidia-nvjpeg)"


@lru_cache(maxsize=1)
def jpeg_decoder() -> Any:
    """This process's nvImageCodec decoder: on the GPU where CUDA can use one, else on the CPU.

    Raises:
        RuntimeError: nvImageCodec is not installed.
    """
    try:
        from nvidia import nvimgcodec
    except ImportError as error:
        raise RuntimeError(
            f"checks.jpeg_decoder is nvimgcodec, but nvImageCodec is not installed: {INSTALL_HINT}"
        ) from error
    try:
        return nvimgcodec.Decoder()
    except RuntimeError as error:  # no CUDA runtime, driver or device
        logger.warning(
            "checks.jpeg_decoder is nvimgcodec but it cannot use a GPU here (%s): it decodes on its "
            "CPU backend, slower than the default Pillow decoder",
            error,
        )
        cpu = nvimgcodec.Backend(nvimgcodec.BackendKind.CPU_ONLY)
        return nvimgcodec.Decoder(device_id=nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY, backends=[cpu])


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """The JPEG's pixels as RGB, turned as its EXIF orientation says; None if it does not decode.

    A file nvImageCodec cannot decode (truncated, malformed, a variant it lacks) is left to
    Pillow, which decodes it or says why not.

    Shape: (H, W, 3) uint8
    """
    image = jpeg_decoder().decode(data)
    return None if image is None else np.asarray(image.cpu())
