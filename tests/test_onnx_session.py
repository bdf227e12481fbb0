import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from models.embedder import Embedder, ModelConfig
from models.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from models.fp16 import convert_fp16
from tasks.config import EmbeddingConfig
from tasks.model_runtime.batch_slots import batch_slots
from tasks.model_runtime.gpu import nvidia_gpu_count
from tasks.model_runtime.sessions import (
    CPU,
    CPU_BATCH,
    CUDA,
    GPU_BATCH,
    TENSORRT,
    embedding_batch_size,
    embedding_precision,
    open_session,
    provider_options,
    session_options,
)

SMALL = ModelConfig(backbone="resnet10", width=8, input_size=32, embedding_dim=16)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    export_onnx(Embedder(SMALL).eval(), path, {"code_version": "test"})
    return path


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def plain_run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=[CPU])
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])


def test_io_bound_fixed_batches_embed_as_a_plain_run_does(model_path: Path) -> None:
    # 21 images in batches of 8: two full batches and a padded one of 5.
    session = open_session(str(model_path), EmbeddingConfig(batch_size=8, device="cpu", precision="fp32"))
    assert session.provider == CPU
    first, again = images(21), images(13, seed=1)
    np.testing.assert_allclose(session.embed(first), plain_run(model_path, first), atol=1e-5)
    # The bound buffers are reused: a second, different call is not served stale rows.
    np.testing.assert_allclose(session.embed(again), plain_run(model_path, again), atol=1e-5)
    assert session.embed(images(0)).shape == (0, SMALL.embedding_dim)


def test_many_batches_through_the_two_slots_embed_as_a_plain_run_does(model_path: Path) -> None:
    # 16 batches of 4, the last padded: each slot is filled while the other one runs, 8 times.
    session = open_session(str(model_path), EmbeddingConfig(batch_size=4, device="cpu", precision="fp32"))
    for seed, count in ((3, 63), (4, 64), (5, 2)):
        batch = images(count, seed=seed)
        np.testing.assert_allclose(session.embed(batch), plain_run(model_path, batch), atol=1e-5)


def optimized_operators(model_path: Path, options: ort.SessionOptions, out: Path) -> set[str]:
    """The operator types left in the graph after ONNX Runtime's optimisations on the CPU."""
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(model_path), sess_options=options, providers=[CPU])
    return {node.op_type for node in onnx.load(str(out)).graph.node}


def test_the_fixed_batch_folds_away_the_shape_nodes_a_cuda_graph_cannot_capture(
    model_path: Path, tmp_path: Path
) -> None:
    dynamic = ort.SessionOptions()
    dynamic.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The exported graph has a free batch axis, which leaves a Shape node to run on the CPU.
    assert "Shape" in optimized_operators(model_path, dynamic, tmp_path / "dynamic.onnx")
    fixed = session_options(str(model_path), num_threads=1, batch_size=8)
    assert "Shape" not in optimized_operators(model_path, fixed, tmp_path / "fixed.onnx")
    session = ort.InferenceSession(str(model_path), sess_options=session_options(str(model_path), 1, 8))
    assert session.get_inputs()[0].shape == [8, 32, 32, 3]
    assert session.get_outputs()[0].shape == [8, SMALL.embedding_dim]


def test_fp16_model_runs_through_the_bound_session(model_path: Path, tmp_path: Path) -> None:
    fp16_path = tmp_path / "model.fp16.onnx"
    convert_fp16(model_path, fp16_path, images(16))
    session = open_session(str(fp16_path), EmbeddingConfig(batch_size=8, device="cpu", precision="fp16"))
    batch = images(11, seed=2)
    cosine = np.sum(session.embed(batch) * plain_run(model_path, batch), axis=1)
    assert np.min(cosine) >= 0.99


@pytest.mark.skipif(nvidia_gpu_count() > 0, reason="this machine has a GPU")
def test_a_requested_gpu_that_is_missing_is_a_warning_and_the_cpu_runs(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        config = EmbeddingConfig(batch_size=4, device="cuda", precision="fp32")
        session = open_session(str(model_path), config)
    assert session.provider == CPU
    assert "no usable CUDA GPU" in caplog.text
    batch = images(4)
    np.testing.assert_allclose(session.embed(batch), plain_run(model_path, batch), atol=1e-5)


@pytest.mark.skipif(nvidia_gpu_count() > 0, reason="this machine has a GPU")
def test_auto_precision_is_int8_on_the_cpu_and_a_named_one_is_kept() -> None:
    assert embedding_precision(EmbeddingConfig(device="auto")) == "int8"
    assert embedding_precision(EmbeddingConfig(device="cpu", precision="fp16")) == "fp16"


def test_auto_precision_is_fp16_when_a_clusters_gpu_workers_embed() -> None:
    # The flow's own machine may have no GPU: its workers' GPUs decide.
    assert embedding_precision(EmbeddingConfig(device="auto"), gpu_workers=True) == "fp16"
    assert embedding_precision(EmbeddingConfig(device="cpu"), gpu_workers=True) == "int8"


def test_tensorrt_engines_are_cached_beside_the_model(tmp_path: Path) -> None:
    options = provider_options(TENSORRT, tmp_path / "model.onnx", fp16=True, cuda_graph=False)
    assert options["trt_engine_cache_path"] == str(tmp_path / "tensorrt")
    assert options["trt_timing_cache_path"] == str(tmp_path / "tensorrt")
    assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "1"
    # The session fixes the batch: a static graph needs no optimisation profile.
    assert not any(key.startswith("trt_profile") for key in options)
    assert options["trt_fp16_enable"] == "1"


def test_cuda_never_searches_convolutions_per_shape_and_graphs_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    plain = provider_options(CUDA, path, fp16=True, cuda_graph=False)
    assert plain["cudnn_conv_algo_search"] == "HEURISTIC"
    assert plain["prefer_nhwc"] == "1"
    assert plain["enable_cuda_graph"] == "0"
    assert provider_options(CUDA, path, fp16=True, cuda_graph=True)["enable_cuda_graph"] == "1"
    assert provider_options(CPU, path, fp16=False, cuda_graph=False) == {}


def test_the_default_batch_follows_the_device(model_path: Path) -> None:
    """No batch_size given: 64 where the CPU provider runs (this machine has no GPU); a GPU
    provider would get 256 (embedding_batch_size)."""
    session = open_session(str(model_path), EmbeddingConfig(device="auto", precision="fp32"))
    assert (session.provider, session.batch_size) == (CPU, CPU_BATCH) == (CPU, 64)
    assert embedding_batch_size("cpu") == CPU_BATCH and GPU_BATCH >= 256
    first = images(70)  # one full default batch and a padded one
    np.testing.assert_allclose(session.embed(first), plain_run(model_path, first), atol=1e-5)


@pytest.mark.skipif(nvidia_gpu_count() > 0, reason="this machine has a GPU")
def test_a_gpu_session_whose_pytorch_cannot_pin_gets_host_slots_and_a_warning(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # This machine's PyTorch is a CPU build: the slots a GPU provider would get fall back
    # to host memory, and the run says so instead of failing to pin.
    with caplog.at_level(logging.WARNING):
        slots = batch_slots(True, (4, 32, 32, 3), SMALL.embedding_dim)
    assert "copied to the GPU from pageable memory" in caplog.text
    session = ort.InferenceSession(str(model_path), sess_options=session_options(str(model_path), 1, 4))
    binding = session.io_binding()
    slots.bind(binding, 0)
    batch = images(4, seed=6)
    slots.staging(0)[:] = batch
    slots.upload(0)
    slots.wait_uploaded(0)
    session.run_with_iobinding(binding)
    np.testing.assert_allclose(slots.download(0), plain_run(model_path, batch), atol=1e-5)
