"""Deployments end to end: a real `prefect server`, real work pools, `prefect deploy` from
deployments/prefect.yaml, a real process worker, `prefect deployment run --watch`, and
the Prefect UI in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.images import write_bad_files, write_scene_crops

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
TINY_TRAINING = {"backbone": "resnet10", "width": 8, "input_size": 32, "embedding_dim": 16, "epochs": 1}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PREFECT, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def api(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/api{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")


def run_local(
    server: Server, parameters: dict[str, Any], watch: bool = True
) -> subprocess.CompletedProcess[str]:
    """`prefect deployment run 'curate/local' --param k=v ...`, waiting for the end with --watch."""
    params = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in parameters.items()]
    args = [arg for param in params for arg in ("--param", param)]
    watching = ["--watch", "--watch-timeout", "400"] if watch else []
    return server.cli("deployment", "run", "curate/local", *args, *watching, timeout=450)


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # A process group of its own: stopping it stops the flow-run processes it started.
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    process = start(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, home / "server.log"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                break
        except OSError:
            time.sleep(1)
    else:
        stop(process)
        pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
    yield Server(url, env)
    stop(process)


@pytest.fixture(scope="module")
def deployed(server: Server) -> Server:
    for pool, kind in (("winnow-process", "process"), ("winnow-docker", "docker")):
        created = server.cli("work-pool", "create", pool, "--type", kind)
        assert created.returncode == 0, created.stdout + created.stderr
    result = server.cli("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return server


@pytest.fixture(scope="module")
def worker(deployed: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start(
        [PREFECT, "worker", "start", "--pool", "winnow-process", "--type", "process"], deployed.env, log
    )
    yield process
    stop(process)


@pytest.fixture(scope="module")
def finished_run(
    deployed: Server, worker: subprocess.Popen[bytes], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("deployment-run")
    write_scene_crops(root / "photos", per_scene=2)
    write_bad_files(root / "photos")
    parameters = {
        "source": root / "photos",
        "output": root / "out",
        "n_samples": 3,
        "training": TINY_TRAINING,
    }
    result = run_local(deployed, parameters)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = deployed.api("POST", "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 1})
    return {"run": run, "output": root / "out", "stdout": result.stdout}


def test_deploy_creates_the_three_deployments_with_their_settings(deployed: Server) -> None:
    deployments = {d["name"]: d for d in deployed.api("POST", "/deployments/filter", {})}
    assert set(deployments) == {"local", "nightly", "gpu"}
    nightly = deployments["nightly"]
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["parameters"]["datapool"] == "nightly"
    gpu = deployments["gpu"]
    assert gpu["work_pool_name"] == "winnow-docker"
    requests = gpu["job_variables"]["container_create_kwargs"]["device_requests"]
    assert requests == [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
    # The run form: every parameter with its description, defaults where there are any.
    schema = deployments["local"]["parameter_openapi_schema"]["properties"]
    assert {"source", "n_samples", "datapool", "process_all", "aws_credentials", "training"} <= set(schema)
    assert "folder or s3://bucket/prefix" in schema["source"]["description"]
    assert schema["process_all"]["default"] is False


def test_a_deployment_run_completes_on_a_process_worker(
    finished_run: dict[str, Any], deployed: Server
) -> None:
    run = finished_run["run"]
    assert run["state"]["type"] == "COMPLETED", run["state"]
    output = finished_run["output"]
    latest = json.loads((output / "latest.json").read_text())
    record = json.loads(Path(latest["run_json"]).read_text())
    assert record["counts"]["selected"] == 3
    assert record["counts"]["corrupt"] == 3
    assert len(Path(record["artifacts"]["selected_filenames.txt"]).read_text().splitlines()) == 3
    artifacts = deployed.api(
        "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    keys = {a["key"] for a in artifacts}
    assert {"curate-progress", "curate-counts", "curate-summary"} <= keys
    summary = next(a for a in artifacts if a["key"] == "curate-summary")
    assert record["run_id"] in summary["data"]


def test_an_invalid_parameter_is_refused_naming_the_field(deployed: Server) -> None:
    result = deployed.cli(
        "deployment", "run", "curate/local", "--param", "source=/tmp", "--param", "n_samples=0"
    )
    assert result.returncode != 0
    assert "n_samples" in result.stdout + result.stderr


BROWSER = [
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1400,1000",
    # Time for the single-page app to fetch from the API and render before the dump.
    "--virtual-time-budget=30000",
]


def rendered(url: str, screenshot: Path | None = None) -> str:
    """The page's DOM after the Prefect UI rendered it in headless Chromium."""
    assert shutil.which("chromium"), "Debian's chromium is needed: scripts/test.sh installs it"
    if screenshot is not None:
        shot = subprocess.run([*BROWSER, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
        assert screenshot.exists() and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    return subprocess.run([*BROWSER, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout


def test_the_block_types_register_and_show_in_the_catalog(deployed: Server) -> None:
    for module in ("tasks.datapool.block", "prefect_aws"):
        result = deployed.cli("block", "register", "-m", module)
        assert result.returncode == 0, result.stdout + result.stderr
    block_type = deployed.api("GET", "/block_types/slug/winnow-datapool")
    assert block_type["name"] == "winnow datapool"
    assert "datapool" in block_type["description"]
    catalog = rendered(f"{deployed.url}/blocks/catalog")
    assert "winnow datapool" in catalog.lower()
    assert "aws credentials" in catalog.lower()


def test_the_ui_shows_the_run_its_summary_and_the_run_form(
    finished_run: dict[str, Any], deployed: Server, tmp_path: Path
) -> None:
    run = finished_run["run"]
    record_id = json.loads((finished_run["output"] / "latest.json").read_text())["run_id"]
    artifacts = deployed.api(
        "POST", "/artifacts/filter", {"artifacts": {"key": {"any_": ["curate-summary"]}}}
    )
    summary = next(a for a in artifacts if a["flow_run_id"] == run["id"])
    run_page = rendered(f"{deployed.url}/runs/flow-run/{run['id']}", tmp_path / "run.png")
    assert run["name"] in run_page
    assert "Completed" in run_page
    summary_page = rendered(f"{deployed.url}/artifacts/artifact/{summary['id']}", tmp_path / "summary.png")
    assert record_id in summary_page
    assert "Datapool" in summary_page
    form = rendered(
        f"{deployed.url}/deployments/deployment/{run['deployment_id']}/run", tmp_path / "form.png"
    )
    for text in ("n_samples", "how many new samples to select this run", "process_all", "datapool"):
        assert text in form.lower(), text


def flow_run_processes(flow_run_id: str) -> list[int]:
    """Pids of the processes executing a flow run (the worker passes its id in the env)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:  # the process ended, or is not ours to read
            continue
    return pids


def wait_for(condition: Any, what: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def test_a_worker_killed_mid_run_loses_nothing_and_a_retried_run_completes(
    deployed: Server, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    write_scene_crops(tmp_path / "photos", per_scene=2)
    output = tmp_path / "out"
    parameters = {"source": tmp_path / "photos", "output": output}
    slow = TINY_TRAINING | {"epochs": 200}  # long enough to be killed while training
    started = run_local(deployed, parameters | {"training": slow}, watch=False)
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout)
    assert run_id, started.stdout
    run = deployed.api("GET", f"/flow_runs/{run_id.group(1)}")

    def training() -> bool:
        tasks = deployed.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
        return any(t["name"].startswith("train") and t["state"]["type"] == "RUNNING" for t in tasks)

    wait_for(training, "the run to start training")
    stop(worker)  # the worker goes, and with it (killed below) the flow-run process
    for pid in flow_run_processes(run["id"]):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not flow_run_processes(run["id"]), "the flow-run process to die")
    assert not (output / "latest.json").exists()
    assert not list(output.glob("datapool/*/versions/*.json"))

    replacement = start(
        [PREFECT, "worker", "start", "--pool", "winnow-process", "--type", "process"],
        deployed.env,
        tmp_path / "worker.log",
    )
    try:
        again = run_local(deployed, parameters | {"training": TINY_TRAINING})
    finally:
        stop(replacement)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    record = json.loads(Path(json.loads((output / "latest.json").read_text())["run_json"]).read_text())
    assert record["datapool"]["base_version"] == 0 and record["datapool"]["commits_version"] == 1
    assert record["counts"]["new"] == record["counts"]["discovered"]
