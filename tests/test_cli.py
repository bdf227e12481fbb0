"""`python -m flows curate`: flags, a YAML config, and clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app, merge_options
from tests.images import write_bad_files, write_scene_crops
from tests.pids import all_end

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = "backbone: resnet10, width: 8, input_size: 32, embedding_dim: 16"


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "flows", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_flags_override_the_config_file() -> None:
    merged = merge_options(
        {"source": "a", "training": {"epochs": 5, "width": 8}},
        {"source": "b", "training.epochs": 2, "training.enabled": None, "output": None},
    )
    assert merged == {"source": "b", "training": {"epochs": 2, "width": 8}}


def test_a_missing_source_is_an_error_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["curate", "--source", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "source:" in result.output
    assert "nowhere" in result.output


def test_a_bad_config_value_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"source: {tmp_path}\ntraining:\n  input_size: 8\n")
    result = CliRunner().invoke(app, ["curate", "--config", str(config)])
    assert result.exit_code == 2
    assert "training.input_size: Input should be greater than or equal to 32" in result.output


def test_python_dash_m_flows_curates_a_folder(tmp_path: Path) -> None:
    source = tmp_path / "photos"
    write_scene_crops(source, per_scene=3)
    write_bad_files(source)
    config = tmp_path / "run.yaml"
    config.write_text(
        "training: {backbone: resnet10, width: 8, input_size: 32, embedding_dim: 16, epochs: 5}\n"
        "embedding: {batch_size: 8}\n"
    )
    result = run_module(
        "curate",
        "--source",
        str(source),
        "--config",
        str(config),
        "--proportion",
        "0.5",
        "--epochs",
        "1",
        "--budget-minutes",
        "2.5",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The default output is winnow-output/<source name> under the working directory.
    output = tmp_path / "winnow-output" / "photos"
    latest = json.loads((output / "latest.json").read_text())
    record = json.loads(Path(latest["run_json"]).read_text())
    assert record["config"]["training"]["epochs"] == 1  # the flag beat the file
    assert record["config"]["training"]["budget_minutes"] == 2.5
    assert not record["model"]["training_budget_reached"]
    assert record["config"]["embedding"]["batch_size"] == 8
    assert record["counts"]["selected"] == 9  # half of the 18 clean images
    assert record["counts"]["corrupt"] == 3
    assert (
        "selected 9 of 18 new clean samples (a sample is an image or a video frame); "
        "21 files found, 21 new; 3 corrupt files, 0 duplicates"
    ) in result.stdout
    # Piped, no bars: one plain line a stage as it ends, in order, and no escape codes.
    stage_lines = [line.split(":")[0] for line in result.stdout.splitlines() if line.endswith(" s)")]
    assert stage_lines == [
        "discovering",
        "inspecting",
        "training",
        "exporting",
        "embedding",
        "selecting",
        "publishing",
    ]
    assert "\x1b[" not in result.stdout
    assert "report: " in result.stdout


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_killed_cli_leaves_no_prefect_server_behind(tmp_path: Path) -> None:
    write_scene_crops(tmp_path / "photos", per_scene=2)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PYTHONPATH": str(REPO)}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    (tmp_path / "run.yaml").write_text(f"training: {{{TINY_MODEL}, epochs: 500}}\n")
    command = [sys.executable, "-m", "flows", "curate", "--source", str(tmp_path / "photos")]
    cli = subprocess.Popen(
        [*command, "--output", str(tmp_path / "out"), "--config", str(tmp_path / "run.yaml"), "--quiet"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "out" / "cache").exists():  # the flow is running
            assert time.monotonic() < deadline and cli.poll() is None, "the run never started"
            time.sleep(0.5)
        servers = children_of(cli.pid)
        assert servers, "the CLI runs its flow against a server of its own"
    finally:
        cli.kill()
        cli.wait()
    assert all_end(servers, 30), "the temporary Prefect server outlived the CLI"


def test_two_racing_runs_the_loser_gets_the_conflict_error_and_commits_nothing(tmp_path: Path) -> None:
    """Run B opens the datapool and trains at length; run A, started meanwhile on the same
    output, commits first. B must fail with the conflict error, its run.json saying so, and
    the datapool must hold A's commit alone."""
    write_scene_crops(tmp_path / "photos", per_scene=2)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PYTHONPATH": str(REPO)}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    slow = tmp_path / "slow.yaml"
    slow.write_text(f"training: {{{TINY_MODEL}, epochs: 600}}\n")
    common = ["curate", "--source", str(tmp_path / "photos"), "--output", str(tmp_path / "out")]
    loser = subprocess.Popen(
        [sys.executable, "-m", "flows", *common, "--config", str(slow)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert loser.stdout is not None
        for line in loser.stdout:  # piped: one line a stage as it ends
            if line.startswith("inspecting:"):
                break  # the datapool is open at version 0 and training begins
        winner = run_module(*common, "--epochs", "1", "--quiet", cwd=tmp_path)
        assert winner.returncode == 0, winner.stderr[-3000:]
        _, errors = loser.communicate(timeout=600)
    finally:
        loser.kill()
    assert loser.returncode == 1
    last_line = errors.strip().splitlines()[-1]
    assert re.match(
        r"error: datapool '[^']+' moved to version 1 \(committed by run \S+\) while run", last_line
    )
    assert "its files stay under runs/; run again" in last_line
    latest = json.loads((tmp_path / "out" / "latest.json").read_text())
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*/run.json")]
    statuses = {record["run_id"]: record["status"] for record in records}
    assert statuses[latest["run_id"]] == "committed"
    [lost] = [record for record in records if record["run_id"] != latest["run_id"]]
    assert lost["status"] == "conflict" and "moved to version 1" in lost["error"]
    assert [p.name for p in (tmp_path / "out" / "datapool").glob("*/versions/*.json")] == ["00000001.json"]
