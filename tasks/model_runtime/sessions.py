"""ONNX Runtime sessions for embedding: which provider, with which options, and a fixed batch.

The batch axis is fixed when the session is built (a static graph, as CUDA graphs need), and
batches run through two slots bound to buffers on the provider's device (IO binding).

TensorRT, then CUDA, when a GPU is asked for (or `auto`) and usable; the CPU otherwise.
The provider that actually runs is read back from the session, never assumed, and a GPU
that was asked for but cannot be used is a warning, never a silent fallback.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from tasks.config import EmbeddingConfig
from tasks.model_runtime.batch_slots import SLOTS, batch_slots, pinned_memory_available
from tasks.model_runtime.gpu import nvidia_gpu_count

logger = logging.getLogger(__name__)

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"

GPU_PROVIDERS = (TENSORRT, CUDA)

# Beside the model: engines are built for one model, so a new model never finds a stale one.
TENSORRT_CACHE_DIR = "tensorrt"


def tensorrt_installed() -> bool:
    """Whether TensorRT's runtime library can be loaded.

    onnxruntime-gpu lists its TensorRT provider as available whether or not TensorRT is
    installed, and asking for it without TensorRT logs an error before falling back.
    """
    return ctypes.util.find_library("nvinfer") is not None


def requested_providers(device: str) -> list[str]:
    """The providers to ask for on `device` (auto, cpu or cuda), best first, the CPU last."""
    available = ort.get_available_providers()
    gpus = nvidia_gpu_count()
    usable = CUDA in available and gpus > 0
    if device == "cuda" and not usable:
        logger.warning("embedding.device is cuda but no usable CUDA GPU was found: embedding on the CPU")
    elif device == "auto" and gpus > 0 and CUDA not in available:
        # The machine has a GPU, and the run would quietly be many times slower without it.
        logger.warning(
            "this machine has %d NVIDIA GPU(s) but ONNX Runtime has no CUDA provider (is onnxruntime "
            "installed instead of onnxruntime-gpu?): embedding on the CPU",
            gpus,
        )
    if device not in ("cuda", "auto") or not usable:
        return [CPU]
    return [TENSORRT, CUDA, CPU] if TENSORRT in available and tensorrt_installed() else [CUDA, CPU]


# Samples from which int8 pays on the CPU. In a first run over 1,000 photographs on 2 cores
# (benchmarks.first_run), quantizing (calibration on 256 images and the agreement check)
# took 2.8 s once, and int8 embedded 1,587 images/s against fp32's 555: even from about
# 2,400 samples.
INT8_FROM_SAMPLES = 3000


def embedding_precision(
    config: EmbeddingConfig, gpu_workers: bool = False, samples: int | None = None
) -> str:
    """The precision to embed with: fp32, fp16 or int8.

    Under auto: fp16 on a GPU (half the bytes, and tensor cores); where the CPU provider
    runs, int8 (the CPU's speed-up) when the run embeds at least INT8_FROM_SAMPLES
    `samples` (or an unknown number), fp32 below. `gpu_workers`: embedding runs on other
    machines' GPUs (a cluster's GPU resource), whatever this one has.
    """
    if config.precision != "auto":
        return config.precision
    on_gpu = (gpu_workers and config.device != "cpu") or requested_providers(config.device) != [CPU]
    if on_gpu:
        return "fp16"
    return "int8" if samples is None or samples >= INT8_FROM_SAMPLES else "fp32"


def provider_options(provider: str, model_path: Path, fp16: bool, cuda_graph: bool) -> dict[str, str]:
    """The options winnow runs `provider` with, for the model at `model_path` with its batch fixed."""
    if provider == CUDA:
        return {
            # HEURISTIC: a new input shape must not trigger a cuDNN benchmark.
            "cudnn_conv_algo_search": "HEURISTIC",
            # NHWC convolutions use tensor cores without a layout transpose per layer.
            "prefer_nhwc": "1",
            "enable_cuda_graph": "1" if cuda_graph else "0",
        }
    if provider == TENSORRT:
        cache = str(model_path.parent / TENSORRT_CACHE_DIR)
        # The session fixes the batch axis, so the graph TensorRT sees is static: one engine,
        # built once (minutes), then loaded, and no optimisation profile to give.
        return {
            "trt_fp16_enable": "1" if fp16 else "0",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": cache,
        }
    return {}


def batch_axis_name(model_path: str) -> str | None:
    """The name of the model input's free batch dimension; None where the graph fixes it."""
    graph = onnx.load(model_path, load_external_data=False).graph
    return graph.input[0].type.tensor_type.shape.dim[0].dim_param or None


def session_options(model_path: str, num_threads: int, batch_size: int) -> ort.SessionOptions:
    """Full graph optimisation, with the model's batch axis fixed to `batch_size`.

    With the axis fixed, constant folding removes the graph's Shape nodes. Left in, they
    would run on the CPU between the GPU's kernels, and ONNX Runtime refuses to capture a
    CUDA graph over a model whose nodes are not all on the CUDA provider.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    axis = batch_axis_name(model_path)
    if axis is not None:
        options.add_free_dimension_override_by_name(axis, batch_size)
    return options


class BoundSession:
    """A session whose batches, all of one fixed shape, run through two bound slots.

    Every run has the same shape (the last batch is padded), so the provider never sees a
    new one. While the model runs one slot's batch, a thread of the session copies the next
    batch into the other slot and starts its upload. uint8 images travel to the device; the
    graph normalises them there. One embedding runs at a time.
    """

    def __init__(self, session: ort.InferenceSession, batch_size: int) -> None:
        self.session = session
        self.provider: str = session.get_providers()[0]
        image_shape = tuple(int(d) for d in session.get_inputs()[0].shape[1:])
        self._dim = int(session.get_outputs()[0].shape[1])
        self._batch_size = batch_size
        self._slots = batch_slots(self.provider in GPU_PROVIDERS, (batch_size, *image_shape), self._dim)
        self._bindings: list[ort.IOBinding] = []
        self._run_options: list[ort.RunOptions] = []
        for slot in range(SLOTS):
            binding = session.io_binding()
            self._slots.bind(binding, slot)
            self._bindings.append(binding)
            options = ort.RunOptions()
            # A CUDA graph replays the addresses it captured: one graph a slot.
            options.add_run_config_entry("gpu_graph_id", str(slot))
            self._run_options.append(options)
        self._stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="winnow-batches")
        self._last_slot = 0
        self._lock = threading.Lock()

    @property
    def batch_size(self) -> int:
        """Images in the fixed batch every run processes."""
        return self._batch_size

    def _stage(self, images: np.ndarray, start: int, slot: int) -> int:
        """Copy the batch of `images` from `start` into `slot` and start its upload.

        Returns its number of images; the pad rows keep earlier images, whose embeddings
        are never read.
        """
        count = min(self._batch_size, len(images) - start)
        self._slots.staging(slot)[:count] = images[start : start + count]
        self._slots.upload(slot)
        return count

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed uint8 images in fixed batches.

        Shape: (N, S, S, 3) -> float32 (N, D)
        """
        out = np.empty((len(images), self._dim), dtype=np.float32)
        starts = range(0, len(images), self._batch_size)
        with self._lock:
            staged: Future[int] | None = None
            try:
                for number, start in enumerate(starts):
                    slot = number % SLOTS
                    count = staged.result() if staged is not None else self._stage(images, start, slot)
                    following = start + self._batch_size
                    staged = (
                        self._stager.submit(self._stage, images, following, 1 - slot)
                        if following < len(images)
                        else None
                    )
                    self._slots.wait_uploaded(slot)
                    self.session.run_with_iobinding(self._bindings[slot], self._run_options[slot])
                    out[start : start + count] = self._slots.download(slot)[:count]
                    self._last_slot = slot
            finally:
                # A failed run must not leave a copy running into a slot the next call fills.
                if staged is not None:
                    wait([staged])
        return out

    def run_bound(self) -> np.ndarray:
        """Run the model once on the batch `embed` ran last, copying nothing in.

        The run takes the model's own time, as a benchmark measures it, plus the copy of the
        batch's embeddings out (a few hundred KB).

        Returns the batch's embeddings on the host. Shape: (batch_size, D)
        """
        with self._lock:
            slot = self._last_slot
            self.session.run_with_iobinding(self._bindings[slot], self._run_options[slot])
            return self._slots.download(slot)


# Sessions are reused across shards of a run: building one costs more than a small shard,
# and a TensorRT engine more still.
_session_lock = threading.Lock()


@lru_cache(maxsize=4)
def _cached_session(
    model_path: str, device: str, num_threads: int, batch_size: int, fp16: bool, cuda_graph: bool
) -> BoundSession:
    options = session_options(model_path, num_threads, batch_size)
    providers = requested_providers(device)
    # CUDA graphs capture the CUDA provider's kernels (TensorRT runs its own engine), and
    # need the device buffers only the pinned slots bind.
    graph = cuda_graph and providers != [CPU] and TENSORRT not in providers and pinned_memory_available()
    path = Path(model_path)
    session = ort.InferenceSession(
        model_path,
        sess_options=options,
        providers=[(p, provider_options(p, path, fp16, graph)) for p in providers],
    )
    used = session.get_providers()[0]
    if providers != [CPU] and used not in GPU_PROVIDERS:
        logger.warning(
            "embedding.device is %s and a GPU is here, but ONNX Runtime could not use it (are CUDA "
            "and cuDNN installed?): embedding on the CPU",
            device,
        )
    elif used == CUDA and TENSORRT in providers:
        logger.warning("TensorRT is installed but ONNX Runtime could not use it: embedding with CUDA")
    return BoundSession(session, batch_size)


def open_session(model_path: str, config: EmbeddingConfig, threads: int | None = None) -> BoundSession:
    """A session that embeds with the model at `model_path` as `config` says, reused across shards.

    `threads`: the execution engine's share of cores for one session (None: every core);
    `embedding.num_threads` overrides it.
    """
    threads = config.num_threads or threads or os.cpu_count() or 1
    fp16 = embedding_precision(config) == "fp16"
    batch_size = config.batch_size or embedding_batch_size(config.device)
    with _session_lock:
        return _cached_session(model_path, config.device, threads, batch_size, fp16, config.cuda_graph)


# Batches a GPU needs to stay busy between kernel launches; on the CPU larger ones buy nothing.
GPU_BATCH, CPU_BATCH = 256, 64


def embedding_batch_size(device: str) -> int:
    """The default batch: GPU_BATCH where a GPU provider will run, CPU_BATCH otherwise."""
    return GPU_BATCH if requested_providers(device) != [CPU] else CPU_BATCH
