"""The curate flow: discover -> inspect -> train -> export -> embed -> select -> publish.

It only orchestrates: every computation is a task in tasks/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import ValidationError

from flows.progress import RunProgress
from tasks.config import (
    ChecksConfig,
    EmbeddingConfig,
    InputsConfig,
    RunConfig,
    SelectionConfig,
    TrainingConfig,
    describe_validation_error,
)
from tasks.discover import discover
from tasks.embed import embed_shard, embedding_precision
from tasks.embedding_table import collect_embeddings
from tasks.export import export
from tasks.inspect import collect_samples, inspect_shard
from tasks.publish import RunFiles, publish
from tasks.quantize import quantize
from tasks.select import select
from tasks.train import train

# Shard tasks overlap I/O and decoding; more threads than this only queue on 2-8 cores.
MAX_TASK_WORKERS = min(8, os.cpu_count() or 1)


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def cached_share(states: list[State[Any]]) -> str:
    """'k/n': how many of these task runs Prefect answered from its cache."""
    return f"{sum(state.name == 'Cached' for state in states)}/{len(states)}"


def new_run_id() -> str:
    """Sortable by time, unique by the flow run's id."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{str(flow_run.get_id() or os.getpid())[:8]}"


def build_config(**fields: Any) -> RunConfig:
    """The validated configuration, or a ValueError naming each bad field."""
    try:
        return RunConfig(**fields)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from None


def summary_markdown(record: dict[str, Any]) -> str:
    counts, model = record["counts"], record["model"]
    lines = [
        f"# winnow run {record['run_id']}",
        f"Source `{record['source']}` -> `{record['output']}`",
        "",
        "| discovered | corrupt | duplicates | embedded | selected |",
        "| --- | --- | --- | --- | --- |",
        f"| {counts['discovered']} | {counts['corrupt']} | {counts['duplicates']} "
        f"| {counts['embedded']} | {counts['selected']} |",
        "",
        f"Model: {model['embedding_dim']}-d embeddings, ONNX sha256 `{model['onnx_sha256'][:12]}`, "
        f"{model['precision']}, embedded with {model['execution_provider']}.",
    ]
    if record["selection"]["note"]:
        lines += ["", f"Note: {record['selection']['note']}"]
    return "\n".join(lines)


@flow(
    name="curate",
    # Prefect 3.8 types the runner generically; the instance is what it expects.
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_TASK_WORKERS),  # type: ignore[arg-type]
    description="Train, embed, inspect and select a diverse, clean subset of a folder of images.",
)
def curate(
    source: str,
    output: str | None = None,
    n_samples: int | None = None,
    proportion: float | None = None,
    cache_dir: str | None = None,
    inputs: InputsConfig = InputsConfig(),  # noqa: B008 (frozen model: a safe default)
    checks: ChecksConfig = ChecksConfig(),  # noqa: B008
    training: TrainingConfig = TrainingConfig(),  # noqa: B008
    embedding: EmbeddingConfig = EmbeddingConfig(),  # noqa: B008
    selection: SelectionConfig = SelectionConfig(),  # noqa: B008
) -> dict[str, Any]:
    """Curate `source`: a folder of images.

    Args:
        source: folder of images to curate.
        output: where runs are written (default winnow-output/<source name>).
        n_samples: how many samples to select.
        proportion: share of the clean samples to select, instead of n_samples.
        cache_dir: local folder for decoded images, models and embeddings (default <output>/cache).
        inputs: which files, and shard size.
        checks: corruption and duplicate checks.
        training: the self-supervised model and its training.
        embedding: ONNX Runtime embedding.
        selection: greedy k-center selection.

    Returns:
        The run record written to run.json.
    """
    config = build_config(
        source=source,
        output=output,
        n_samples=n_samples,
        proportion=proportion,
        cache_dir=cache_dir,
        inputs=inputs,
        checks=checks,
        training=training,
        embedding=embedding,
        selection=selection,
    )
    started_at = datetime.now(UTC).isoformat()
    run_id = new_run_id()
    cache, output_dir = config.cache_path, str(config.output_dir)
    work_dir = cache / "runs" / run_id
    progress, timer = RunProgress(), StageTimer()
    cached: dict[str, str] = {}

    with timer.stage("discover"):
        discovery = discover(config.source, config.inputs.relevant_filenames, config.inputs.shard_size, cache)
        progress.update("discover", 1, 1)

    with timer.stage("inspect"):
        futures = inspect_shard.map(
            discovery.shards,
            unmapped(config.source),
            unmapped(config.training.input_size),
            unmapped(config.checks),
            unmapped(cache),
        )
        inspections = []
        for done, future in enumerate(futures, start=1):
            inspections.append(future.result())
            progress.update("inspect", done, len(futures))
        cached["inspect"] = cached_share([f.state for f in futures])
        samples = collect_samples(inspections, config.checks, cache)
    if samples.ok == 0:
        raise ValueError(
            f"source {config.source!r}: none of its {samples.discovered} images could be decoded"
        )

    with timer.stage("train"):
        train_state = train(inspections, samples, config.training, cache, return_state=True)
        trained, cached["train"] = train_state.result(), cached_share([train_state])
        progress.update("train", 1, 1)

    with timer.stage("export"):
        export_state = export(trained, cache, return_state=True)
        onnx_model, cached["export"] = export_state.result(), cached_share([export_state])
        progress.update("export", 1, 1)
    fp32_model = onnx_model
    if embedding_precision(config.embedding) == "int8":
        with timer.stage("quantize"):
            quantize_state = quantize(fp32_model, inspections, samples, cache, return_state=True)
            onnx_model, cached["quantize"] = quantize_state.result(), cached_share([quantize_state])

    with timer.stage("embed"):
        # One shard at a time: each ONNX Runtime session already uses every core.
        embed_states, shard_embeddings = [], []
        for done, inspection in enumerate(inspections, start=1):
            embed_state = embed_shard(inspection, onnx_model, config.embedding, cache, return_state=True)
            embed_states.append(embed_state)
            shard_embeddings.append(embed_state.result())  # a failed shard stops the run here
            progress.update("embed", done, len(inspections))
        cached["embed"] = cached_share(embed_states)
        table = collect_embeddings(samples, shard_embeddings, work_dir)

    with timer.stage("select"):
        chosen = select(table, config.target_count(table.count), config.selection, work_dir)
        progress.update("select", 1, 1)

    providers = sorted({s.provider for s in shard_embeddings})
    record: dict[str, Any] = {
        "run_id": run_id,
        "status": "completed",
        "source": config.source,
        "output": output_dir,
        "config": config.model_dump(mode="json"),
        "counts": {
            "discovered": samples.discovered,
            "new": samples.discovered,
            "corrupt": samples.corrupt,
            "duplicates": samples.duplicates,
            "embedded": table.count,
            "selected": chosen.selected,
        },
        "timings": timer.seconds,
        "model": {
            "onnx_sha256": onnx_model.sha256,
            "embedding_dim": onnx_model.embedding_dim,
            "input_size": onnx_model.input_size,
            "execution_provider": ",".join(providers),
            "onnx_parity_max_abs_diff": onnx_model.parity_max_abs_diff,
            "precision": onnx_model.precision,
            "int8_min_cosine": onnx_model.int8_min_cosine,
            "trained": trained.trained,
            "training_images": trained.images,
            "training_epochs": trained.epochs,
            "training_images_per_second": round(trained.images_per_second, 2),
            "training_device": trained.device,
            "final_loss": trained.final_loss,
        },
        "selection": {"requested": chosen.requested, "candidates": chosen.candidates, "note": chosen.note},
        "cached_tasks": cached,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
    }
    files = RunFiles(
        samples=samples,
        embeddings=table,
        selection=chosen,
        onnx_model=onnx_model.path,
        fp32_onnx_model=fp32_model.path if fp32_model != onnx_model else None,
        checkpoint=trained.checkpoint,
    )
    record["artifacts"] = publish(output_dir, run_id, files, record)
    progress.update("publish", 1, 1)

    create_table_artifact([record["counts"]], key="curate-counts", description="curate: counts")
    create_markdown_artifact(summary_markdown(record), key="curate-summary", description="curate: summary")
    return record
