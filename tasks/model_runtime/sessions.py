"""ONNX Runtime sessions for embedding: which provider, with which options, and a fixed batch.

The batch's input and output live on the provider's device (IO binding).

TensorRT, then CUDA, when a GPU is asked for (or `auto`) and usable; the CPU otherwise.
The provider that actually runs is read back from the session, never assumed, and a GPU
that was asked for but cannot be used is a warning, never a silent fallback.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from models.export import INPUT_NAME, OUTPUT_NAME
from tasks.config import EmbeddingConfig
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


def provider_options(
    provider: str, model_path: Path, batch_shape: tuple[int, ...], fp16: bool, cuda_graph: bool
) -> dict[str, str]:
    """The options winnow runs `provider` with for a model fed batches of `batch_shape`."""
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
        # One profile, the fixed batch: an engine is built once (minutes), then loaded.
        shape = f"{INPUT_NAME}:{'x'.join(str(d) for d in batch_shape)}"
        return {
            "trt_fp16_enable": "1" if fp16 else "0",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": cache,
            "trt_profile_min_shapes": shape,
            "trt_profile_opt_shapes": shape,
            "trt_profile_max_shapes": shape,
        }
    return {}


def image_shape(model_path: str) -> tuple[int, ...]:
    """The model's input shape without its batch axis, read from the graph.

    Shape: (S, S, 3)
    """
    graph = onnx.load(model_path, load_external_data=False).graph
    return tuple(d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:])


class BoundSession:
    """A session and one batch of fixed shape bound to buffers on its provider's device.

    Every run has the same shape (the last batch is padded), so the provider never sees a
    new one, and a CUDA graph, which replays fixed addresses, stays valid. uint8 images
    travel to the device; the graph normalises them there. One embedding runs at a time.
    """

    def __init__(self, session: ort.InferenceSession, batch_size: int) -> None:
        self.session = session
        self.provider: str = session.get_providers()[0]
        device = "cuda" if self.provider in GPU_PROVIDERS else "cpu"
        image_shape = tuple(int(d) for d in session.get_inputs()[0].shape[1:])
        dim = int(session.get_outputs()[0].shape[1])
        self._host_batch = np.zeros((batch_size, *image_shape), dtype=np.uint8)
        self._input = ort.OrtValue.ortvalue_from_numpy(self._host_batch, device, 0)
        self._output = ort.OrtValue.ortvalue_from_shape_and_type((batch_size, dim), np.float32, device, 0)
        self._binding = session.io_binding()
        self._binding.bind_ortvalue_input(INPUT_NAME, self._input)
        self._binding.bind_ortvalue_output(OUTPUT_NAME, self._output)
        self._lock = threading.Lock()

    @property
    def batch_size(self) -> int:
        """Images in the fixed batch every run processes."""
        return len(self._host_batch)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed uint8 images in fixed batches.

        Shape: (N, S, S, 3) -> float32 (N, D)
        """
        count, batch_size = len(images), self.batch_size
        out = np.empty((count, self._output.shape()[1]), dtype=np.float32)
        with self._lock:
            for start in range(0, count, batch_size):
                n = min(batch_size, count - start)
                self._host_batch[:n] = images[start : start + n]
                self._input.update_inplace(self._host_batch)  # the one host -> device copy
                self.session.run_with_iobinding(self._binding)
                out[start : start + n] = self._binding.copy_outputs_to_cpu()[0][:n]
        return out

    def run_bound(self) -> ort.OrtValue:
        """Run the model once on the batch already in the bound input, copying nothing in or out.

        The batch is the last one `embed` copied there; the run takes the model's own time, as a
        benchmark measures it.

        Returns the bound output, on the provider's device. Shape: (batch_size, D)
        """
        with self._lock:
            self.session.run_with_iobinding(self._binding)
        return self._output


# Sessions are reused across shards of a run: building one costs more than a small shard,
# and a TensorRT engine more still.
_session_lock = threading.Lock()


@lru_cache(maxsize=4)
def _cached_session(
    model_path: str, device: str, num_threads: int, batch_size: int, fp16: bool, cuda_graph: bool
) -> BoundSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = requested_providers(device)
    batch_shape = (batch_size, *image_shape(model_path))
    # CUDA graphs capture the CUDA provider's kernels; TensorRT runs its own engine.
    graph = cuda_graph and TENSORRT not in providers
    path = Path(model_path)
    session = ort.InferenceSession(
        model_path,
        sess_options=options,
        providers=[(p, provider_options(p, path, batch_shape, fp16, graph)) for p in providers],
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
