"""The embed benchmark run small on the CPU, its refusal of a GPU that is not there, the
model-only run it times on a GPU, and what the GPU script installs."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks.missing import EXTRAS, MEASURED, missing
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


@pytest.mark.skipif(GPU_USABLE, reason="this machine has a usable GPU")
def test_the_whole_pipeline_on_cuda_without_a_usable_gpu_stops_naming_the_cause() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.embed_e2e", "--device", "cuda", "--images", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    (message,) = result.stderr.strip().splitlines()  # one line: no traceback, no photos written
    assert message.startswith("benchmarks.embed_e2e --device cuda: no usable GPU: ")


def test_run_bound_embeds_the_batch_that_embed_left_bound(tmp_path: Path) -> None:
    config = ModelConfig(backbone="resnet10", width=8, input_size=32, embedding_dim=16)
    torch.manual_seed(0)
    path = tmp_path / "model.onnx"
    export_onnx(Embedder(config).eval(), path, {"code_version": "test"})
    session = open_session(str(path), EmbeddingConfig(batch_size=4, device="cpu", precision="fp32"))
    batch = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    session.embed(batch)
    plain = ort.InferenceSession(str(path), providers=[CPU]).run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    np.testing.assert_allclose(session.run_bound(), plain, atol=1e-5)


def test_the_gpu_script_installs_what_the_benchmarks_need_absent_or_too_old(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["numpy>=1", "numpy>=999", "prefect>=999", "pillow>=999"]\n'
        '[project.optional-dependencies]\ntest = ["pytest>=1", "moto[server]>=999", "pyarrow>=999"]\n'
    )
    # Prefect and moto are not what the benchmarks measure: never installed for them.
    assert missing(pyproject) == ["numpy>=999", "pillow>=999", "pyarrow>=999"]


GPU_BENCHMARKS = (
    "benchmarks.embed",
    "benchmarks.train",
    "benchmarks.embed_e2e",
    "benchmarks.inspect",
    "benchmarks.select",
)


def test_the_gpu_benchmarks_import_only_what_missing_installs() -> None:
    """Every distribution the GPU benchmarks load that pyproject names is in MEASURED, and
    none of Prefect, boto3 or moto is loaded at all."""
    code = (
        "import importlib, importlib.metadata as md, json, sys\n"
        f"for name in {GPU_BENCHMARKS!r}: importlib.import_module(name)\n"
        "top = {n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names)\n"
        "found = md.packages_distributions()\n"
        "print(json.dumps(sorted({d for n in top for d in found.get(n, [])})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = {canonicalize_name(name) for name in json.loads(result.stdout)}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    named = {
        canonicalize_name(Requirement(line).name)
        for line in [*project["dependencies"], *(line for extra in EXTRAS for line in extras[extra])]
    }
    assert loaded & named <= {canonicalize_name(name) for name in MEASURED}, sorted(loaded & named)
    assert not loaded & {"prefect", "boto3", "moto", "prefect-aws", "dask"}


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


def test_the_inspect_benchmark_reports_the_cost_an_image_and_the_rate_by_workers() -> None:
    figures = last_json_line("benchmarks.inspect", "--images", "40", "--workers", "1,2", "--rounds", "1")
    assert figures["images"] == 40
    assert 0 < figures["cpu_ms_per_image"] <= figures["cpu_ms_per_image_threads"]
    assert set(figures["images_per_second_by_workers"]) == {"1", "2"}
    assert all(rate > 0 for rate in figures["images_per_second_by_workers"].values())


def test_the_scale_benchmark_finds_every_planted_duplicate_and_writes_only_the_new_rows() -> None:
    figures = last_json_line(
        "benchmarks.scale",
        *("--pool", "40000", "--baseline-pool", "25000", "--new", "3000", "--planted", "60", "--picks", "30"),
    )
    assert (figures["pool_rows"], figures["new_rows"]) == (40_000, 3_000)
    assert figures["near_duplicates_found"] == figures["near_duplicates_planted"] == 60
    assert figures["pool_index"]["bytes"] > 0  # the pool is large enough to be searched by its index
    today, winnow = figures["baseline"]["whole"], figures["baseline"]["segments"]
    assert today["near_duplicates_found"] == winnow["near_duplicates_found"] == 60
    # Today's way rewrites the whole manifest; winnow writes this run's rows (and their index).
    assert winnow["bytes_written_per_run"] < today["bytes_written_per_run"] / 4
    assert figures["bytes_written_per_run"] < winnow["bytes_written_per_run"] * 1.05
    assert figures["picks"] == 30 and figures["peak_rss_gb"] > 0 and figures["selection_side_seconds"] > 0


def test_the_neighbours_benchmark_measures_recall_against_the_exact_search() -> None:
    figures = last_json_line(
        "benchmarks.neighbours", "--pool", "20000", "--queries", "1000", "--libraries", "faiss-ivf-sq16"
    )
    ivf = figures["libraries"]["faiss-ivf-sq16"]
    assert ivf["planted_recall"] == 1.0 and ivf["false_positives"] == 0
    assert ivf["build_s"] > 0 and ivf["query_s"] > 0 and ivf["index_bytes"] > 0


def test_gpu_sh_dry_run_says_what_it_needs_and_checks_wheels_carried_in_parts(tmp_path: Path) -> None:
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    wheel.write_bytes(np.random.default_rng(0).bytes(300_000))
    folder = tmp_path / "wheels"
    carry = subprocess.run(
        ["bash", "benchmarks/carry.sh", str(wheel), str(folder)],
        cwd=ROOT,
        env={**os.environ, "PART_SIZE": "64K"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert carry.returncode == 0, carry.stderr
    parts = sorted(folder.glob("fake-1.0-py3-none-any.whl.part-*"))
    assert len(parts) == 5 and all(part.stat().st_size <= 64 * 1024 for part in parts)
    assert b"".join(part.read_bytes() for part in parts) == wheel.read_bytes()

    def dry_run() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "WHEELS": str(folder), "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
        command = ["bash", "benchmarks/gpu.sh", "--dry-run"]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    listed = dry_run()
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for requirement in missing():
        assert f"  {requirement} (pip install --no-index --find-links {folder}" in listed.stdout
    assert "fake-1.0-py3-none-any.whl: 5 parts, sha256 ok" in listed.stdout
    assert "parts of at most 60 MiB" in listed.stdout
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was put together
    assert not (folder / wheel.name).exists()

    damaged = bytearray(parts[2].read_bytes())
    damaged[0] ^= 0xFF
    parts[2].write_bytes(bytes(damaged))
    checked = dry_run()
    assert checked.returncode == 1
    assert "fake-1.0-py3-none-any.whl: sha256 MISMATCH, not installed" in checked.stdout
