"""Deployments end to end: a real `prefect server`, real work pools, `prefect deploy` from
deployments/prefect.yaml, a real process worker, `prefect deployment run --watch`, and
the Prefect UI in headless Chromium."""

from __future__ import annotations

import json
import os
import re
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
from playwright.sync_api import Page

from tests.browser import open_page
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
    pools = (("winnow-process", "process"), ("winnow-docker", "docker"), ("winnow-gpu", "process"))
    for pool, kind in pools:
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


def progress_artifact(server: Server, flow_run_id: str) -> dict[str, Any] | None:
    """The run's curate-progress artifact as the API has it now (None before it exists)."""
    found = server.api(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": ["curate-progress"]}}},
    )
    return found[0] if found else None


def open_tab(page: Page, name: str) -> str:
    """Click the run page's tab `name` and return the page's text once it has rendered."""
    page.get_by_text(name, exact=True).first.click()
    page.wait_for_timeout(2000)
    return page.inner_text("body")


def scrolled_to(page: Page, text: str) -> str:
    """Scroll the page down until `text` shows (the logs list renders as it scrolls); its text then."""
    for _ in range(60):
        if page.get_by_text(text, exact=False).count():
            return page.inner_text("body")
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(500)
    raise AssertionError(f"{text!r} never showed on the page")


def run_record(run: dict[str, Any]) -> dict[str, Any]:
    """The run.json of the run latest.json names."""
    latest = json.loads((run["output"] / "latest.json").read_text())
    return dict(json.loads(Path(latest["run_json"]).read_text()))


@pytest.fixture(scope="module")
def watched_run(
    deployed: Server, worker: subprocess.Popen[bytes], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A deployment run started as the README says, looked at in the UI while it trains.

    It asks for more samples than there are, so selection logs a warning, and to train on
    CUDA, which these test machines lack (as CI's), so training starts with one. What the
    run page showed while training is kept (text, and a screenshot in `screens`) for the tests.
    """
    root = tmp_path_factory.mktemp("deployment-run")
    screens = tmp_path_factory.mktemp("screens")
    write_scene_crops(root / "photos", per_scene=2)
    write_bad_files(root / "photos")
    parameters = {
        "source": root / "photos",
        "output": root / "out",
        "n_samples": 500,
        # Long enough to be looked at while it trains.
        "training": TINY_TRAINING | {"epochs": 400, "device": "cuda"},
    }
    started = run_local(deployed, parameters, watch=False)
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout)
    assert run_id, started.stdout
    flow_run_id = run_id.group(1)

    def training() -> dict[str, Any] | None:
        artifact = progress_artifact(deployed, flow_run_id)
        return artifact if artifact and "training: epoch" in (artifact["description"] or "") else None

    first = wait_for(training, "the progress artifact to show a training epoch")
    with open_page(f"{deployed.url}/runs/flow-run/{flow_run_id}", keep=screens / "training.png") as page:
        page.wait_for_timeout(3000)
        logs = scrolled_to(page, "training.device is cuda")
        details = open_tab(page, "Details")
        artifacts_tab = open_tab(page, "Artifacts")
        page.screenshot(path=screens / "training.png", full_page=True)

    def risen() -> dict[str, Any] | None:
        artifact = progress_artifact(deployed, flow_run_id)
        return artifact if artifact and artifact["data"] > first["data"] else None

    later = wait_for(risen, "the progress to rise")

    def ended() -> bool:
        return deployed.api("GET", f"/flow_runs/{flow_run_id}")["state"]["type"] in {"COMPLETED", "FAILED"}

    wait_for(ended, "the run to end", timeout=400)
    return {
        "run": deployed.api("GET", f"/flow_runs/{flow_run_id}"),
        "output": root / "out",
        "during": {"logs": logs, "details": details, "artifacts": artifacts_tab, "progress": [first, later]},
    }


def test_deploy_creates_the_four_deployments_with_their_settings(deployed: Server) -> None:
    deployments = {d["name"]: d for d in deployed.api("POST", "/deployments/filter", {})}
    assert set(deployments) == {"local", "nightly", "gpu", "gpu-standing"}
    nightly = deployments["nightly"]
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["parameters"]["datapool"] == "nightly"
    gpu = deployments["gpu"]
    assert gpu["work_pool_name"] == "winnow-docker"
    requests = gpu["job_variables"]["container_create_kwargs"]["device_requests"]
    assert requests == [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
    assert gpu["job_variables"]["image_pull_policy"] == "IfNotPresent"
    assert deployments["gpu-standing"]["work_pool_name"] == "winnow-gpu"
    # The run form: every parameter with its description, defaults where there are any.
    schema = deployments["local"]["parameter_openapi_schema"]["properties"]
    assert {"source", "n_samples", "datapool", "process_all", "aws_credentials", "training"} <= set(schema)
    assert "folder or s3://bucket/prefix" in schema["source"]["description"]
    assert schema["process_all"]["default"] is False


def test_a_deployment_run_completes_on_a_process_worker(
    watched_run: dict[str, Any], deployed: Server
) -> None:
    run = watched_run["run"]
    assert run["state"]["type"] == "COMPLETED", run["state"]
    record = run_record(watched_run)
    clean = record["counts"]["embedded"]
    assert record["counts"]["selected"] == clean > 0  # asked for 500: all of them
    assert record["counts"]["corrupt"] == 3
    assert len(Path(record["artifacts"]["selected_filenames.txt"]).read_text().splitlines()) == clean
    # The final state says what the run did.
    assert run["state"]["message"].startswith(f"selected {clean} of {clean} new clean samples")
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


def test_the_block_types_register_and_show_in_the_catalog(deployed: Server, tmp_path: Path) -> None:
    for module in ("tasks.datapool.block", "prefect_aws"):
        result = deployed.cli("block", "register", "-m", module)
        assert result.returncode == 0, result.stdout + result.stderr
    block_type = deployed.api("GET", "/block_types/slug/winnow-datapool")
    assert block_type["name"] == "winnow datapool"
    assert "datapool" in block_type["description"]
    with open_page(f"{deployed.url}/blocks/catalog", keep=tmp_path / "catalog.png") as page:
        page.get_by_text("winnow datapool", exact=False).first.wait_for(timeout=30_000)
        catalog = page.inner_text("body").lower()
        assert "winnow datapool" in catalog
        assert "aws credentials" in catalog


def test_while_training_the_run_page_shows_the_stage_a_rising_progress_and_a_warning(
    watched_run: dict[str, Any],
) -> None:
    during = watched_run["during"]
    # The state message names the stage as it starts (Details tab) ...
    assert re.search(
        r"State Message\s+training: \d+ clean samples, at most 400 epochs or 10 min on cpu", during["details"]
    )
    # ... and the progress artifact says where training is, epoch by epoch.
    assert re.search(r"training: epoch \d+/400, loss \d+\.\d+", during["artifacts"])
    first, later = during["progress"]
    assert 0 < first["data"] < later["data"] < 100
    # winnow's own warning, logged with plain `logging` as training starts, is in the Logs tab.
    assert re.search(r"WARNING\s+training.device is cuda but no CUDA device is usable", during["logs"])
    assert "tasks.model_runtime.training" in during["logs"]


def test_after_the_run_the_page_shows_100_percent_the_warning_and_the_gallery(
    watched_run: dict[str, Any], deployed: Server, tmp_path: Path
) -> None:
    run = watched_run["run"]
    progress = progress_artifact(deployed, run["id"])
    assert progress is not None and progress["data"] == 100.0
    assert progress["description"].startswith("done: selected ")
    record = run_record(watched_run)
    with open_page(f"{deployed.url}/runs/flow-run/{run['id']}", keep=tmp_path / "run.png") as page:
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=30_000)
        assert run["name"] in page.inner_text("body")
        # winnow's own warning, logged with plain `logging`, is in the flow run's logs.
        logs = scrolled_to(page, "asked for 500 samples")
        assert re.search(r"WARNING\s+asked for 500 samples but this run has only \d+ new clean", logs)
        assert "tasks.selection.choose" in logs
        artifacts_tab = open_tab(page, "Artifacts")
        for key in ("curate-progress", "curate-summary", "curate-results", "curate-gallery"):
            assert key in artifacts_tab, key
    artifacts = deployed.api(
        "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    )
    by_key = {a["key"]: a for a in artifacts}
    summary_url = f"{deployed.url}/artifacts/artifact/{by_key['curate-summary']['id']}"
    with open_page(summary_url, keep=tmp_path / "summary.png") as page:
        page.get_by_text("Datapool", exact=False).first.wait_for(timeout=30_000)
        summary = page.inner_text("body")
        assert record["run_id"] in summary
        # A local output: the report's path as text, not a dead file:// link.
        assert record["artifacts"]["report.html"] in summary
        assert page.locator("a[href^='file:']").count() == 0
    gallery_url = f"{deployed.url}/artifacts/artifact/{by_key['curate-gallery']['id']}"
    with open_page(gallery_url, keep=tmp_path / "gallery.png") as page:
        page.locator("img[title^='pick']").first.wait_for(timeout=30_000)
        widths = page.evaluate(
            "Array.from(document.querySelectorAll(\"img[title^='pick']\")).map(i => i.naturalWidth)"
        )
    assert len(widths) == min(24, record["counts"]["selected"])
    assert all(width > 0 for width in widths)


def test_the_run_form_renders_descriptions_and_choices_with_n_samples_near_the_top(
    watched_run: dict[str, Any], deployed: Server, tmp_path: Path
) -> None:
    url = f"{deployed.url}/deployments/deployment/{watched_run['run']['deployment_id']}/run"
    with open_page(url, keep=tmp_path / "form.png") as page:
        label = page.get_by_text("n_samples", exact=False).first
        label.wait_for(timeout=30_000)
        form = page.inner_text("body")
        assert "how many new samples to select this run" in form.lower()
        # Found without scrolling: inside the first window's height.
        box = label.bounding_box()
        assert box is not None and box["y"] < 1000
        # Placeholders render as written (the UI reads descriptions as markdown).
        assert "<output>/selected/<key>" in form
        assert "output, <output>/shards (S3" in form
        # A choice that may be left empty is a select, not free text behind a type switch.
        field = page.locator(".schema-form-property", has_text="Shard Store (Optional)").last
        assert field.locator(".p-select").count() == 1
        assert field.locator("textarea, input[type=text]").count() == 0
    deployment = deployed.api("GET", f"/deployments/{watched_run['run']['deployment_id']}")
    execution = deployment["parameter_openapi_schema"]["definitions"]["ExecutionConfig"]["properties"]
    assert execution["shard_store"]["enum"] == ["cache", "output", None]


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
