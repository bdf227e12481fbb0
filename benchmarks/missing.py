"""What this Python lacks of winnow's requirements for the GPU benchmarks, one pip
requirement a line (those of pyproject.toml's dependencies, test and gpu-decode extras
that the benchmarks import: MEASURED).

    python -m benchmarks.missing

torch and onnxruntime-gpu count as present when they can use CUDA, whatever their version:
a GPU machine's own CUDA build of torch is used rather than replaced by the pinned one.
It runs before anything is installed, so it needs only the standard library and `packaging`.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def cuda_capable(name: str) -> bool | None:
    """Whether torch or onnxruntime-gpu can use CUDA here; None for any other requirement."""
    try:
        if name == "torch":
            import torch

            return bool(torch.cuda.is_available())
        if name == "onnxruntime-gpu":
            # The CPU-only onnxruntime installs the same module, without the CUDA provider.
            import onnxruntime

            return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        return False
    return None


def installed(requirement: Requirement) -> bool:
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(version, prereleases=True)


# The requirements the GPU benchmarks (gpu.sh) import, directly or through winnow's modules:
# what they measure, and nothing of Prefect, boto3 or moto. tests/test_benchmarks.py keeps
# this list true by importing the benchmarks and naming what they load.
MEASURED = frozenset(
    {
        "torch",
        "onnx",
        "onnxruntime-gpu",
        "onnxconverter-common",
        "numpy",
        "pillow",
        "pyarrow",
        "av",
        "nvidia-ml-py",
        "kmedoids",
        "pydantic",
        "pathspec",
        "scikit-image",
        "scikit-learn",
        "psutil",
        "nvidia-nvimgcodec-cu13",
        "nvidia-nvjpeg",
    }
)

# The extras whose requirements the benchmarks may need, beside the dependencies.
EXTRAS = ("test", "gpu-decode")


def missing(pyproject: Path = PYPROJECT) -> list[str]:
    """The requirements of `pyproject` the benchmarks need (MEASURED) that no installed
    distribution satisfies, in order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lacking = []
    extras = project["optional-dependencies"]
    for line in [*project["dependencies"], *(line for extra in EXTRAS for line in extras.get(extra, []))]:
        requirement = Requirement(line)
        if requirement.name not in MEASURED:
            continue
        capable = cuda_capable(requirement.name)
        if not (installed(requirement) if capable is None else capable):
            lacking.append(str(requirement))
    return lacking


if __name__ == "__main__":
    print("\n".join(missing()))
