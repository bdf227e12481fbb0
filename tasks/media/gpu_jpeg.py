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
import threading
from functools import lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'winnow[gpu-decode]' (nvidia-nvimgcodec-cu13 and nvidia-nvjpeg)"


@lru_cache(maxsize=1)
def nvimgcodec() -> Any:
    """The nvImageCodec module.

    Raises:
        RuntimeError: nvImageCodec is not installed.
    """
    try:
        from nvidia import nvimgcodec
    except ImportError as error:
        raise RuntimeError(
            f"checks.jpeg_decoder is nvimgcodec, but nvImageCodec is not installed: {INSTALL_HINT}"
        ) from error
    return nvimgcodec


@lru_cache(maxsize=1)
def gpu_unusable() -> str | None:
    """Why nvImageCodec cannot decode on a GPU in this process; None when it can. Warns once."""
    try:
        nvimgcodec().Decoder()
    except RuntimeError as error:  # no CUDA runtime, driver or device
        logger.warning(
            "checks.jpeg_decoder is nvimgcodec but it cannot use a GPU here (%s): it decodes on its "
            "CPU backend, slower than the default Pillow decoder",
            error,
        )
        return str(error)
    return None


# A decoder serves one thread at a time: decoding with one from several threads at once
# returned no image for about one call in ten.
_THREAD = threading.local()


def jpeg_decoder() -> Any:
    """This thread's nvImageCodec decoder: on the GPU where CUDA can use one, else on the CPU."""
    decoder = getattr(_THREAD, "decoder", None)
    if decoder is None:
        module = nvimgcodec()
        if gpu_unusable() is None:
            decoder = module.Decoder()
        else:
            cpu = module.Backend(module.BackendKind.CPU_ONLY)
            decoder = module.Decoder(device_id=module.NVIMGCODEC_DEVICE_CPU_ONLY, backends=[cpu])
        _THREAD.decoder = decoder
    return decoder


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """The JPEG's pixels as RGB, turned as its EXIF orientation says; None if it does not decode.

    A file nvImageCodec cannot decode (truncated, malformed, a variant it lacks) is left to
    Pillow, which decodes it or says why not. So is one whose decode raises (a CUDA error):
    a bad file, or a GPU gone bad, must not stop the run, and Pillow still decodes right.

    Shape: (H, W, 3) uint8
    """
    decoder = jpeg_decoder()
    try:
        image = decoder.decode(data)
    except RuntimeError as error:
        logger.warning("nvImageCodec failed on a JPEG (%s): Pillow decodes it", error)
        return None
    return None if image is None else np.asarray(image.cpu())
