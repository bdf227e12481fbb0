"""The curate flow with engine dask on a real Dask cluster on 127.0.0.1: a LocalCluster
worker process and a `dask worker` process that has a GPU resource. Both runs must give
what the local engine gives on the same data and seed, byte for byte."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster, get_task_stream

from flows.curate import curate
from tests.images import write_scene_crops
from tests.test_curate_flow import TINY_TRAINING

SHARDS = {"shard_size": 4}  # 24 images: 6 shards, so both workers get some
SHARD_COUNT = 6
GPU = "GPU"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source")
    write_scene_crops(root, per_scene=4)
    return root


def run(source: Path, output: Path, **execution: Any) -> dict[str, Any]:
    return curate(
        source=str(source),
        output=str(output),
        n_samples=5,
        training=TINY_TRAINING,
        inputs=SHARDS,
        execution=execution or {"engine": "local"},
    )


@pytest.fixture(scope="module")
def local_run(prefect_server: None, source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run(source, tmp_path_factory.mktemp("local"))


@pytest.fixture(scope="module")
def cluster(prefect_server: None) -> Iterator[tuple[Client, str]]:
    """A scheduler with a CPU-only worker process, and a GPU worker started as a user
    starts one: `dask worker ADDRESS --resources GPU=1`. Yields a client and the worker
    that has the GPU resource."""
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        gpu_worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "distributed.cli.dask_worker", local.scheduler_address),
                *("--nthreads", "1", "--resources", f"{GPU}=1", "--name", "gpu", "--no-dashboard"),
            ],
        )
        try:
            client.wait_for_workers(2, timeout=60)
            gpu = next(
                a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == "gpu"
            )
            yield client, gpu
        finally:
            gpu_worker.terminate()
            gpu_worker.wait(timeout=30)


def assert_same_results(run: dict[str, Any], reference: dict[str, Any]) -> None:
    """The same samples, embeddings and picks as the reference run. (Not the same ONNX
    file: the graph's metadata names the checkpoint's path in the run's own cache.)"""
    assert run["counts"] == reference["counts"]
    folder, expected = (Path(r["output"]) / "runs" / r["run_id"] for r in (run, reference))
    for table in ("samples.parquet", "embeddings.parquet", "selection.parquet"):
        assert pq.read_table(folder / table).equals(pq.read_table(expected / table)), table
    selected = (folder / "selected_filenames.txt").read_text()
    assert selected == (expected / "selected_filenames.txt").read_text()
    assert len(selected.splitlines()) == 5


def ran_on(stream: list[dict[str, Any]], task_name: str) -> list[str]:
    """The worker of each run of `task_name` the scheduler recorded."""
    return [t["worker"] for t in stream if t["key"].startswith(task_name)]


def test_a_cluster_run_equals_the_local_run_and_embeds_only_on_gpu_workers(
    local_run: dict[str, Any],
    cluster: tuple[Client, str],
    source: Path,
    tmp_path: Path,
) -> None:
    client, gpu = cluster
    with get_task_stream(client) as stream:
        record = run(source, tmp_path, engine="dask", address=client.scheduler.address, gpu_resource=GPU)
    assert_same_results(record, local_run)
    assert record["cached_tasks"]["inspect"] == f"0/{SHARD_COUNT}"
    assert len(ran_on(stream.data, "inspect_shard")) == SHARD_COUNT
    assert ran_on(stream.data, "embed_shard") == [gpu] * SHARD_COUNT


def test_a_worker_killed_while_embedding_loses_only_its_shard(
    local_run: dict[str, Any],
    cluster: tuple[Client, str],
    source: Path,
    tmp_path: Path,
) -> None:
    client, _ = cluster
    killed: list[str] = []
    run_over = threading.Event()

    def kill_a_worker_once_it_embeds() -> None:
        while not run_over.is_set():
            for worker, keys in client.processing().items():
                if any(str(key).startswith("embed_shard") for key in keys):
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_worker_once_it_embeds, daemon=True)
    killer.start()
    try:
        record = run(source, tmp_path, engine="dask", address=client.scheduler.address)
    finally:
        run_over.set()
        killer.join()
    assert killed, "no worker was embedding: the test killed nothing"
    assert_same_results(record, local_run)
    client.wait_for_workers(2, timeout=60)  # its nanny restarts the killed worker
