"""The curate flow with engine dask on a real Dask cluster on 127.0.0.1: a LocalCluster
worker process and a `dask worker` process that has a GPU resource. Both runs must give
what the local engine gives on the same data and seed, byte for byte, whether the shard
results go through a shared folder or a bucket on the test S3 server."""

from __future__ import annotations

import io
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
from PIL import Image

from flows.curate import curate
from tests.images import jpeg_bytes, scene, write_scene_crops
from tests.s3 import new_bucket, s3_admin_client, upload_folder
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
        # Named, as the local run picks it on this CPU machine: with a gpu_resource, auto
        # would pick fp16 for the GPU workers, and these only pose as GPU workers.
        embedding={"precision": "int8"},
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


def run_file(record: dict[str, Any], name: str, client: Any = None) -> bytes:
    """A file the run wrote to its output: a folder, or (with `client`) a bucket."""
    if client is None:
        return (Path(record["output"]) / "runs" / record["run_id"] / name).read_bytes()
    bucket, _, prefix = record["output"].removeprefix("s3://").partition("/")
    return bytes(
        client.get_object(Bucket=bucket, Key=f"{prefix}/runs/{record['run_id']}/{name}")["Body"].read()
    )


def assert_same_results(run: dict[str, Any], reference: dict[str, Any], client: Any = None) -> None:
    """The same samples, embeddings and picks as the reference run. (Not the same ONNX
    file: the graph's metadata names the checkpoint's path in the run's own cache.)"""
    assert run["counts"] == reference["counts"]
    for table in ("samples.parquet", "embeddings.parquet", "selection.parquet"):
        got, expected = (
            pq.read_table(io.BytesIO(run_file(r, table, c))) for r, c in ((run, client), (reference, None))
        )
        assert got.equals(expected), table
    selected = run_file(run, "selected_filenames.txt", client).decode()
    assert selected == run_file(reference, "selected_filenames.txt").decode()
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


def test_workers_without_a_shared_disk_exchange_shards_through_the_output_bucket(
    local_run: dict[str, Any],
    cluster: tuple[Client, str],
    source: Path,
    s3_endpoint: str,
    aws_credentials: str,
    tmp_path: Path,
) -> None:
    """With an address, shard results go to <output>/shards: workers upload what they make,
    and the flow's process fetches samples tables and embeddings, and images only to train."""
    client, _ = cluster
    bucket = new_bucket(s3_endpoint)
    upload_folder(s3_endpoint, source, bucket, "raw")
    cache = tmp_path / "flow-cache"

    def run_on_bucket() -> dict[str, Any]:
        return curate(
            source=f"s3://{bucket}/raw",
            output=f"s3://{bucket}/curated",
            aws_credentials=aws_credentials,
            cache_dir=str(cache),
            n_samples=5,
            training=TINY_TRAINING,
            inputs=SHARDS,
            embedding={"precision": "int8"},  # as the local run it is compared with
            execution={"engine": "dask", "address": client.scheduler.address},
        )

    record = run_on_bucket()
    s3 = s3_admin_client(s3_endpoint)
    assert_same_results(record, local_run, s3)
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="curated/shards/")["Contents"]]
    for name in ("manifests/", "/images.u8", "/samples.parquet", "/embeddings.npy"):
        assert sum(name in key for key in stored) == SHARD_COUNT, name
    assert f"curated/shards/models/{record['model']['onnx_sha256']}.onnx" in stored
    # Nothing was inspected or embedded into the flow's cache; it fetched copies to train.
    assert not (cache / "inspect").exists() and not (cache / "embeddings").exists()
    fetched = {p.name for p in (cache / "fetched").rglob("*") if p.is_file()}
    assert fetched == {"images.u8", "samples.parquet", "embeddings.npy"}
    images_before = sorted((cache / "fetched").rglob("images.u8"))

    # A new photo next week: the datapool's model embeds it, so no image reaches the flow.
    new_photo = jpeg_bytes(scene("coffee").resize((64, 64)).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    s3.put_object(Bucket=bucket, Key="raw/zz-new.jpg", Body=new_photo)
    again = run_on_bucket()
    assert again["datapool"]["model_reused"]
    assert again["counts"]["new"] == again["counts"]["embedded"] == 1
    assert sorted((cache / "fetched").rglob("images.u8")) == images_before
