"""Where the per-shard stages run: local thread pools, or the workers of a Dask cluster.

Bounded thread pools in the flow's process, images decoded in worker processes (engine
local), or the workers of a Dask cluster through prefect-dask's DaskTaskRunner (engine dask).

The flow's own task runner is fixed when `curate` is defined, while the engine is a run
parameter; so the shard stages submit to a runner opened here for the stage. Their task
runs still belong to the flow run (prefect-dask ships the flow run's context with each).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
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
from tasks.media.processes import decoding_in_processes

R = TypeVar("R")

# Shard tasks overlap I/O and decoding; more threads than this only queue on 2-8 cores.
MAX_TASK_WORKERS = min(8, os.cpu_count() or 1)
# Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns glibc's dynamic mmap
# threshold off: every decoded image's buffer is then mapped and unmapped afresh, and
# decoding ran 2-2.5x slower on a worker than in the flow's process (measured on 2 cores).
KEEP_GLIBC_MALLOC = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


# What the shard tasks import (torch, ONNX Runtime, Prefect: seconds of work): a worker
# the run starts imports them as it starts, not in its first shard.
SHARD_TASK_MODULES = ("tasks.media.stage", "tasks.model_runtime.stage")


@dataclass(frozen=True)
class ShardRunners:
    """The task runners of the per-shard stages, open for a run."""

    inspect: TaskRunner[Any]
    embed: TaskRunner[Any]


class ShardEngine:
    """Opens the task runners of the per-shard stages.

    Local thread pools, or a Dask scheduler at `address`. `start_seconds`: how long a
    cluster started for the run took to come up (None when none was started).
    """

    def __init__(
        self,
        address: str | None,
        gpu_resource: str | None,
        start_seconds: float | None = None,
        decoding_processes: int = 0,
    ) -> None:
        self.address = address
        self.gpu_resource = gpu_resource
        self.start_seconds = start_seconds
        self.decoding_processes = decoding_processes

    @contextmanager
    def runners(self) -> Iterator[ShardRunners]:
        """The task runners of the per-shard stages, open while the context lasts.

        Locally, inspection in a bounded pool whose threads decode in `decoding_processes`
        worker processes (tasks/media/processes.py), and embedding one shard at a time (one
        ONNX Runtime session already uses every core). On a cluster, one DaskTaskRunner for
        both: an embed task then takes an inspect task's future as its input, as Dask
        accepts only futures of the client it submits to.
        """
        if self.address:
            with DaskTaskRunner(address=self.address) as runner:
                yield ShardRunners(inspect=runner, embed=runner)
            return
        inspect: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=MAX_TASK_WORKERS)
        embed: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=1)
        with inspect, embed, decoding_in_processes(self.decoding_processes):
            yield ShardRunners(inspect=inspect, embed=embed)

    def embed_placement(self) -> AbstractContextManager[Any]:
        """The context to submit embed tasks in.

        With `gpu_resource`, each needs one unit of it, so only workers that have it take them.
        """
        return dask.annotate(resources={self.gpu_resource: 1}) if self.gpu_resource else nullcontext()

    def embed_threads(self, runner: TaskRunner[Any]) -> int | None:
        """ONNX Runtime threads for each embed task.

        None (every core) locally; on a cluster the fewest cores a worker thread has to itself
        among the workers that embed, so parallel sessions on one machine do not fight over
        its cores.
        """
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
def shard_engine(execution: ExecutionConfig) -> Iterator[ShardEngine]:
    """The run's engine.

    For dask without an address, a LocalCluster for this run alone (one single-threaded
    worker process a core, the shard tasks' modules imported as each starts), closed when
    the run ends.
    """
    if execution.engine == "local":
        yield ShardEngine(None, None, decoding_processes=execution.n_workers or os.cpu_count() or 1)
    elif execution.address is not None:
        yield ShardEngine(execution.address, execution.gpu_resource)
    else:
        n_workers = execution.n_workers or os.cpu_count() or 1
        started = time.perf_counter()
        with (
            dask.config.set(KEEP_GLIBC_MALLOC),
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                preload=list(SHARD_TASK_MODULES),
            ) as cluster,
        ):
            yield ShardEngine(cluster.scheduler_address, None, round(time.perf_counter() - started, 3))


def submit_shards(
    runner: TaskRunner[Any], task: Task[..., R], mapped: dict[str, list[Any]], fixed: dict[str, Any]
) -> list[PrefectFuture[R]]:
    """Submit `task` once a shard to `runner`.

    A mapped value may be another shard task's future: the task then starts once that one
    has finished.
    """
    parameters: dict[str, Any] = mapped | {name: unmapped(value) for name, value in fixed.items()}
    return list(runner.map(task, parameters))  # type: ignore[arg-type]


def gather_shards(
    futures: list[PrefectFuture[R]], on_done: Callable[[int, int], None]
) -> tuple[list[R], list[State[Any]]]:
    """The shard tasks' results and final states, in shard order.

    The first failed shard raises here. `on_done(done, total)` follows progress.

    Each Dask future is released once its result is here: Dask would otherwise keep the
    result on its worker and, if that worker died later in the run, compute the finished
    shard again. (A task that still needs it as input keeps it alive.)
    """
    results, states = [], []
    for done, future in enumerate(futures, start=1):
        results.append(future.result())
        states.append(future.state)
        if isinstance(future, PrefectDaskFuture):
            future.wrapped_future.release()
        on_done(done, len(futures))
    return results, states
