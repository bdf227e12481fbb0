"""GPU utilisation and memory, sampled through NVML while a stage runs, for run.json.

A background thread asks the driver every SAMPLE_INTERVAL_S; without a driver or a GPU it
samples nothing and the record says so. A stage that leaves the GPU mostly idle is named,
so a slow run says which side starved the device. On a cluster, each embed task samples
its worker's GPU the same way, and the flow gathers the figures per worker.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pynvml

# NVML's utilisation counter covers the last 1/6 s to 1 s, depending on the GPU: sampling
# twice a second sees every busy or idle spell that matters for a stage of seconds.
SAMPLE_INTERVAL_S = 0.5

# Below this mean utilisation the GPU waited more than it worked.
IDLE_UTILISATION_PCT = 50.0


def visible_gpu() -> int | str:
    """The GPU this process computes on, as NVML names it.

    CUDA_VISIBLE_DEVICES' first entry (an index or a GPU-UUID; NVML itself ignores the variable
    and counts every GPU), else 0.
    """
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(first) if first.isdigit() else first or 0


class GpuSampler:
    """Samples GPU `device` from `start()` to `stop()`.

    `device` is an NVML index or UUID (default: the one this process computes on);
    `summary()` is None when no GPU could be read.
    """

    def __init__(self, device: int | str | None = None, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._device = visible_gpu() if device is None else device
        self._interval_s = interval_s
        self._utilisation: list[float] = []
        self._memory_used: list[int] = []
        self._name, self._memory_total = "", 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling on a background thread; without a driver or a readable GPU, do nothing."""
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return  # no driver: nothing to sample
        try:
            handle = (
                pynvml.nvmlDeviceGetHandleByIndex(self._device)
                if isinstance(self._device, int)
                else pynvml.nvmlDeviceGetHandleByUUID(self._device)
            )
            name = pynvml.nvmlDeviceGetName(handle)
            self._name = name.decode() if isinstance(name, bytes) else str(name)
            self._memory_total = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            return
        self._thread = threading.Thread(target=self._sample, args=(handle,), daemon=True)
        self._thread.start()

    def _sample(self, handle: Any) -> None:
        try:
            while True:
                self._utilisation.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                self._memory_used.append(int(pynvml.nvmlDeviceGetMemoryInfo(handle).used))
                if self._stop.wait(self._interval_s):
                    return
        except pynvml.NVMLError:
            return  # the device went away (reset, fallen off the bus): keep what was sampled

    def stop(self) -> None:
        """Stop sampling and wait for the thread; nothing to do if sampling never started."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        pynvml.nvmlShutdown()

    def summary(self) -> dict[str, Any] | None:
        """The GPU's name, utilisation and memory over the samples taken; None without samples."""
        if not self._utilisation:
            return None
        mib = 1024 * 1024
        return {
            "gpu": self._name,
            "samples": len(self._utilisation),
            "utilisation_mean_pct": round(sum(self._utilisation) / len(self._utilisation), 1),
            "utilisation_max_pct": max(self._utilisation),
            "memory_max_mib": round(max(self._memory_used) / mib),
            "memory_total_mib": round(self._memory_total / mib),
        }


@contextmanager
def sampling() -> Iterator[GpuSampler]:
    """A sampler running for the block; read its summary() after."""
    sampler = GpuSampler()
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


def merged_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several samplings of one GPU (a worker's shards).

    The mean weighted by samples, the maxima of the maxima.
    """
    samples = sum(s["samples"] for s in summaries)
    mean = sum(s["utilisation_mean_pct"] * s["samples"] for s in summaries) / samples
    return {
        "gpu": summaries[0]["gpu"],
        "samples": samples,
        "utilisation_mean_pct": round(mean, 1),
        "utilisation_max_pct": max(s["utilisation_max_pct"] for s in summaries),
        "memory_max_mib": max(s["memory_max_mib"] for s in summaries),
        "memory_total_mib": summaries[0]["memory_total_mib"],
    }


def idle_note(stages: dict[str, dict[str, Any]]) -> str | None:
    """A sentence naming each stage whose mean GPU utilisation was below IDLE_UTILISATION_PCT."""
    idle = [
        f"{stage} ({summary['utilisation_mean_pct']:.0f}%)"
        for stage, summary in stages.items()
        if summary["utilisation_mean_pct"] < IDLE_UTILISATION_PCT
    ]
    if not idle:
        return None
    return (
        f"the GPU was mostly idle during {', '.join(idle)}: that stage's host side (decoding, "
        f"reading and copying the uint8 cache, augmentation launches) starved it"
    )


class StageTelemetry:
    """GPU samples per stage of a run, as run.json's `telemetry`."""

    def __init__(self) -> None:
        self._stages: dict[str, dict[str, Any]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Sample the GPU while the block runs, kept as stage `name` when a GPU could be read."""
        with sampling() as sampler:
            yield
        summary = sampler.summary()
        if summary is not None:
            self._stages[name] = summary

    def add_worker(self, stage: str, worker: str, summaries: list[dict[str, Any]]) -> None:
        """Add a cluster worker's samplings of its GPU during its tasks of `stage`.

        They are kept as the stage `<stage> on <worker>` (host/gpuN).
        """
        if summaries:
            self._stages[f"{stage} on {worker}"] = merged_summary(summaries)

    def record(self) -> dict[str, Any]:
        """The telemetry for run.json: each stage's summary and the idle note, or a no-GPU note."""
        if not self._stages:
            return {"note": "no GPU: nothing sampled"}
        return {"stages": self._stages, "note": idle_note(self._stages)}
