"""The embed benchmark run small on the CPU, its refusal of a GPU that is not there, the
model-only run it times on a GPU, and what the GPU script installs."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from benchmarks.missing import missing
from models.embedder import Embedder, ModelConfig
from models.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from tasks.config import EmbeddingConfig
from tasks.model_runtime.gpu import nvidia_gpu_count
from tasks.model_runtime.sessions import CPU, CUDA, open_session

ROOT = Path(__file__).resolve().parent.parent
SMALL_RUN = ("--input-size", "32", "--batch-sizes", "4", "--images", "16")
GPU_USABLE = nvidia_gpu_count() > 0 and torch.cuda.is_available() and CUDA in ort.get_available_providers()


def embed_benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.embed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_cpu_benchmark_prints_every_side_s_speed_as_its_last_line() -> None:
    result = embed_benchmark(*SMALL_RUN)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    speeds = figures["by_batch_size"]["4"]
    for side in ("ort_img_per_s", "ort_fp32_img_per_s", "torch_img_per_s"):
        assert speeds[side] > 0
        assert figures[side] == speeds[side]  # the last batch size is the headline
    assert figures["ratio"] == pytest.approx(speeds["ort_img_per_s"] / speeds["torch_img_per_s"], rel=0.02)
    assert figures["provider"] == CPU
    assert (figures["batch_size"], figures["input_size"]) == (4, 32)
    assert figures["int8_min_cosine"] >= 0.99


@pytest.mark.skipif(GPU_USABLE, reason="this machine has a usable GPU")
def test_cuda_without_a_usable_gpu_is_one_line_naming_the_cause() -> None:
    result = embed_benchmark("--device", "cuda", *SMALL_RUN)
    assert result.returncode == 1
    assert result.stdout == ""
    (message,) = result.stderr.strip().splitlines()  # one line: no traceback
    assert message.startswith("benchmarks.embed --device cuda: no usable GPU: ")
    assert ("NVIDIA driver (NVML) reports no GPU" in message) == (nvidia_gpu_count() == 0)
    assert (f"PyTorch {torch.__version__} cannot use CUDA" in message) == (not torch.cuda.is_available())


def test_run_bound_embeds_the_batch_that_embed_left_bound(tmp_path: Path) -> None:
    config = ModelConfig(backbone="resnet10", width=8, input_size=32, embedding_dim=16)
    torch.manual_seed(0)
    path = tmp_path / "model.onnx"
    export_onnx(Embedder(config).eval(), path, {"code_version": "test"})
    session = open_session(str(path), EmbeddingConfig(batch_size=4, device="cpu", precision="fp32"))
    batch = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    session.embed(batch)
    plain = ort.InferenceSession(str(path), providers=[CPU]).run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    np.testing.assert_allclose(session.run_bound().numpy(), plain, atol=1e-5)


def test_the_gpu_script_installs_requirements_absent_or_too_old(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["numpy>=1", "numpy>=999", "winnow-no-such-package>=1"]\n'
        '[project.optional-dependencies]\ntest = ["pytest>=1", "moto[server]>=999"]\n'
    )
    assert missing(pyproject) == ["numpy>=999", "winnow-no-such-package>=1", "moto[server]>=999"]


def test_a_torch_without_cuda_is_missing_for_the_gpu_and_setup_installed_the_rest() -> None:
    lacking = missing()
    assert ("torch==2.13.0" in lacking) == (not torch.cuda.is_available())
    assert [r for r in lacking if not r.startswith("torch")] == []


def last_json_line(module: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.splitlines()[-1]))


def test_the_quality_benchmark_scores_every_method_on_a_real_labelled_set() -> None:
    figures = last_json_line(
        "benchmarks.quality", "--sets", "photo_crops", "--epochs", "1", "--budgets", "0.1", "--seeds", "5"
    )
    crops = figures["photo_crops"]
    assert crops["samples"] == 300 and 0 < crops["raw_pixels_5nn"] < 1 and 0 < crops["embedding_5nn"] < 1
    scores = crops["one_nn_accuracy"]["0.1"]
    assert set(scores) == {
        "random",
        "winnow REPRESENTATIVE (default)",
        "winnow DIVERSITY",
        "winnow TYPICALITY x DIVERSITY",
        "facility location (apricot)",
        "k-medoids (FasterPAM)",
        "TypiClust",
    }
    assert scores["random"]["std"] > 0  # five different random subsets
    # Even on a one-epoch model, labelling the default's picks beats labelling random ones.
    assert (
        scores["winnow REPRESENTATIVE (default)"]["mean"] > scores["random"]["mean"] + scores["random"]["std"]
    )


def test_the_typicality_benchmark_compares_the_index_with_the_exact_answer() -> None:
    figures = last_json_line("benchmarks.typicality", "--rows", "4000", "--k", "5", "--top", "200")
    assert figures["top_overlap"] >= 0.95 and figures["median_relative_error"] < 0.05
    assert figures["exact_s"] > 0 and figures["index_s"] > 0
