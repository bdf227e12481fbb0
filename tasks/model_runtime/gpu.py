"""Whether an NVIDIA GPU is present, asked of the driver through NVML."""

from __future__ import annotations

from functools import lru_cache

import pynvml


@lru_cache(maxsize=1)
def nvidia_gpu_count() -> int:
    """GPUs the driver reports; 0 without a driver.

    onnxruntime-gpu lists its CUDA provider as available even on machines without one, and
    asking for it there logs an error.
    """
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()
