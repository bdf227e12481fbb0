"""Where the per-shard stages run: bounded thread pools in the flow's process (engine
local), or the workers of a Dask cluster through prefect-dask's DaskTaskRunner (engine dask).

The flow's own task runner is fixed when `curate` is defined, while the engine is a run
parameter; so the shard stages submit to a runner opened here for the stage. Their task
runs still belong to the flow run (prefect-dask ships the flow run's context with each).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import dask
from distributed import LocalCluster
from prefect import unmapped
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

from tasks.config import ExecutionConfig

R = TypeVar("R")

# Shard tasks overlap I/O and decoding; more threads than this only queue on 2-8 cores.
MAX_TASK_WORKERS = min(8, os.cpu_count() or 1)
# Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns glibc's dynamic mmap
# threshold off: every decoded image's buffer is then mapped and unmapped afresh, and
# decoding ran 2-2.5x slower on a worker than in the flow's process (measured on 2 cores).
KEEP_GLIBC_MALLOC = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


class ShardEngine:
    """Opens the task runner of each per-shard stage: local thread pools, or a Dask
    scheduler at `address`."""

    def __init__(self, address: str | None, gpu_resource: str | None) -> None:
        self.address = address
        self.gpu_resource = gpu_resource

    @contextmanager
    def inspect_runner(self) -> Iterator[TaskRunner[Any]]:
        with self._runner(MAX_TASK_WORKERS) as runner:
            yield runner

    @contextmanager
    def embed_runner(self) -> Iterator[TaskRunner[Any]]:
        """Locally one shard at a time: one ONNX Runtime session already uses every core.
        On a cluster, shards in parallel across workers; with `gpu_resource`, each embed
        task needs one unit of it, so only workers that have it take them."""
        needs = dask.annotate(resources={self.gpu_resource: 1}) if self.gpu_resource else nullcontext()
        with needs, self._runner(1) as runner:
            yield runner

    def embed_threads(self, runner: TaskRunner[Any]) -> int | None:
        """ONNX Runtime threads for each embed task: None (every core) locally; on a cluster
        the fewest cores a worker thread has to itself among the workers that embed, so
        parallel sessions on one machine do not fight over its cores."""
        if not isinstance(runner, DaskTaskRunner):
            return None
        client = runner.client
        cores = client.run(os.cpu_count)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        threads_on_host: dict[str, int] = {}
        for info in workers.values():
            threads_on_host[info["host"]] = threads_on_host.get(info["host"], 0) + info["nthreads"]
        shares = [
            max(1, (cores[address] or 1) // threads_on_host[info["host"]])
            for address, info in workers.items()
            if address in cores and (not self.gpu_resource or self.gpu_resource in info.get("resources", {}))
        ]
        return min(shares, default=1)

    @contextmanager
    def _runner(self, local_workers: int) -> Iterator[TaskRunner[Any]]:
        runner: TaskRunner[Any] = (
            DaskTaskRunner(address=self.address)
            if self.address
            else ThreadPoolTaskRunner(max_workers=local_workers)
        )
        with runner:
            yield runner


@contextmanager
def shard_engine(execution: ExecutionConfig) -> Iterator[ShardEngine]:
    """The run's engine; for dask without an address, a LocalCluster for this run alone
    (one single-threaded worker process a core), closed when the run ends."""
    if execution.engine == "local":
        yield ShardEngine(None, None)
    elif execution.address is not None:
        yield ShardEngine(execution.address, execution.gpu_resource)
    else:
        n_workers = execution.n_workers or os.cpu_count() or 1
        with (
            dask.config.set(KEEP_GLIBC_MALLOC),
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
        ):
            yield ShardEngine(cluster.scheduler_address, None)


def run_shards(
    runner: TaskRunner[Any],
    task: Task[..., R],
    mapped: dict[str, list[Any]],
    fixed: dict[str, Any],
    on_done: Callable[[int, int], None],
) -> tuple[list[R], list[State[Any]]]:
    """Run `task` once a shard on `runner`; its results and final states, in shard order.
    The first failed shard raises here. `on_done(done, total)` follows progress.

    Each Dask future is released once its result is here: Dask would otherwise keep the
    result on its worker and, if that worker died later in the run, compute the finished
    shard again."""
    parameters: dict[str, Any] = mapped | {name: unmapped(value) for name, value in fixed.items()}
    futures: list[PrefectFuture[R]] = list(runner.map(task, parameters))  # type: ignore[arg-type]
    results, states = [], []
    for done, future in enumerate(futures, start=1):
        results.append(future.result())
        states.append(future.state)
        if isinstance(future, PrefectDaskFuture):
            future.wrapped_future.release()
        on_done(done, len(futures))
    return results, states
