"""The GPU image and its deployments, read from Dockerfile.gpu, deployments/prefect.yaml and
the README (no Docker engine runs here, so the image is checked by what it says), and, where
a Docker engine runs and WINNOW_TEST_DOCKER=1 asks for it, built and run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = (REPO / "Dockerfile.gpu").read_text()
FINAL_STAGE = DOCKERFILE.rsplit("\nFROM ", 1)[1]
README = (REPO / "README.md").read_text()


def deployments() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    return {d["name"]: d for d in document["deployments"]}


def instruction(name: str, text: str = FINAL_STAGE) -> list[str]:
    """Every `name` instruction's argument in `text`, in order."""
    return re.findall(rf"^{name} (.+)$", text, flags=re.MULTILINE)


def test_curate_gpu_uses_the_locally_built_image_without_pulling_it() -> None:
    gpu = deployments()["gpu"]["work_pool"]["job_variables"]
    tag = re.search(r"docker build -f Dockerfile.gpu -t\s+(\S+) \.", README)
    assert tag, "the README says how the image is built"
    assert gpu["image"] == tag.group(1).rstrip("`")
    assert gpu["image_pull_policy"] in {"IfNotPresent", "Never"}


def test_winnow_runs_as_a_user_that_owns_its_working_directory() -> None:
    [user] = instruction("USER")
    [workdir] = instruction("WORKDIR")
    assert user != "root" and f"useradd --create-home --uid 10001 {user}" in FINAL_STAGE
    copies = [c for c in instruction("COPY") if c.split()[-1] == workdir]
    assert copies and all(f"--chown={user}:{user}" in c for c in copies), copies
    # The default output and cache are relative to the working directory.
    assert "winnow-output" in README and "writable" in README


def test_the_default_worker_command_polls_a_pool_the_deployments_and_the_readme_name() -> None:
    [command] = instruction("CMD")
    arguments = yaml.safe_load(command)
    pool = arguments[arguments.index("--pool") + 1]
    kind = arguments[arguments.index("--type") + 1]
    [standing] = [d for d in deployments().values() if d["work_pool"]["name"] == pool]
    [pull] = standing["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == instruction("WORKDIR")[0]
    assert f"work-pool create {pool} --type {kind}" in README


def test_the_benchmarks_are_in_the_image() -> None:
    build_stage = DOCKERFILE.rsplit("\nFROM ", 1)[0]
    assert "benchmarks benchmarks" in instruction("COPY", build_stage)
    assert any(c.endswith("/src /opt/winnow/src") for c in instruction("COPY"))


def docker_engine() -> bool:
    """Whether a Docker engine answers here (none does on the machines winnow is developed on)."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=60).returncode == 0


# Building pulls the CUDA base image (GBs) and installs every dependency: asked for, not assumed.
@pytest.mark.skipif(
    os.environ.get("WINNOW_TEST_DOCKER") != "1" or not docker_engine(),
    reason="builds the GPU image: needs a Docker engine and WINNOW_TEST_DOCKER=1",
)
def test_the_built_image_runs_winnow_as_its_user_and_polls_the_pool() -> None:
    tag = "winnow-gpu:test"
    subprocess.run(
        ["docker", "build", "-f", "Dockerfile.gpu", "-t", tag, "."], cwd=REPO, check=True, timeout=3600
    )

    def in_image(*command: str) -> str:
        result = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", command[0], tag, *command[1:]],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        return result.stdout.strip()

    assert in_image("id", "-u") == "10001"
    # The working directory, the default output and cache under it, and the benchmarks run.
    probe = (
        "from pathlib import Path; import benchmarks.embed_e2e, flows.curate, nvidia.nvimgcodec; "
        "out = Path('winnow-output/probe/cache'); out.mkdir(parents=True); (out / 'x').write_text('ok'); "
        "print(Path.cwd())"
    )
    assert in_image("python", "-c", probe) == instruction("WORKDIR")[0]
    configured = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Cmd}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    assert yaml.safe_load(configured.stdout) == yaml.safe_load(instruction("CMD")[0])
