"""The house rules, checked: rooms import one way with no cycle, @tasks live in stage.py
files only the flow imports, Prefect stays out of the pure modules, and --help is quick."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
HEAVY_PACKAGES = ("torch", "prefect", "onnxruntime", "boto3")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("tasks/selection/distances.py", "import prefect", "Prefect is imported by the stages"),
        ("tasks/report/data.py", "from tasks.media.stage import inspect_shard", "imported by the flow alone"),
        ("tasks/records/samples.py", "import tasks.report.data", "Data flows one way"),
        ("tasks/selection/distances.py", "import tasks.selection.quality", "No import cycle"),
    ],
)
def test_a_bad_import_breaks_its_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    for package in ("tasks", "flows", "models"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout
    assert "BROKEN" in result.stdout.split(broken, 1)[1].splitlines()[0]


def test_help_answers_without_loading_torch_or_prefect() -> None:
    probe = (
        "import sys\n"
        "from flows.cli import app\n"
        "try:\n"
        "    app(['curate', '--help'])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_PACKAGES!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--source" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
    module_help = subprocess.run(
        [sys.executable, "-m", "flows", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert module_help.returncode == 0, module_help.stderr
    assert "curate" in module_help.stdout


def test_every_task_is_named_after_its_function() -> None:
    from prefect import Task

    named = {}
    for stage in sorted((REPO / "tasks").glob("*/stage.py")):
        module = importlib.import_module(f"tasks.{stage.parent.name}.stage")
        named |= {value.name: value.fn.__name__ for value in vars(module).values() if isinstance(value, Task)}
    assert len(named) >= 17
    assert all(name == function.replace("_", "-") for name, function in named.items()), named
