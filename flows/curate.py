"""The curate flow: discover -> inspect -> train -> export -> embed -> select -> publish.

It only orchestrates: every computation is a task in tasks/.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from flows.engine import MAX_TASK_WORKERS, ShardEngine, gather_shards, shard_engine, submit_shards
from flows.progress import RunProgress
from flows.record import model_record, report_link, report_record, run_record, summary_markdown
from tasks.config import (
    ChecksConfig,
    EmbeddingConfig,
    ExecutionConfig,
    InputsConfig,
    ReportConfig,
    RunConfig,
    SelectionConfig,
    TrainingConfig,
    VideoConfig,
    describe_validation_error,
)
from tasks.datapool.stage import commit_state, next_manifest, open_datapool
from tasks.datapool.state import model_pointers
from tasks.ingest.stage import discover, plan
from tasks.media.stage import collect_samples, inspect_shard
from tasks.model_runtime.embedding import share_model
from tasks.model_runtime.sessions import embedding_precision
from tasks.model_runtime.stage import collect_embeddings, embed_queries, embed_shard, export, quantize, train
from tasks.model_runtime.telemetry import StageTelemetry
from tasks.publish.files import RunFiles
from tasks.publish.stage import publish
from tasks.records.embeddings import ShardEmbeddings
from tasks.records.model import OnnxModel, TrainedModel
from tasks.records.plan import known_content_hashes
from tasks.records.report import ReportFiles
from tasks.records.samples import ShardInspection
from tasks.records.selection import selected_ids
from tasks.report.stage import render_report
from tasks.selection.stage import remove_near_duplicates, select, selection_inputs
from tasks.storage.shard_store import FETCHED_FOLDER, SHARDS_FOLDER, ShardStore
from tasks.storage.uri import is_s3_uri


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


def run_field(name: str) -> FieldInfo:
    """RunConfig's field `name` (constraints, description) without its default, for the
    flow's signature: the deployment's parameter schema then refuses what RunConfig would
    refuse (n_samples=0, a datapool name that is not a slug) before a run is created."""
    info = copy.copy(RunConfig.model_fields[name])
    info.default = PydanticUndefined
    return info


def submit_embeddings(
    engine: ShardEngine,
    runner: TaskRunner[Any],
    inspections: Sequence[ShardInspection | PrefectFuture[ShardInspection]],
    model: OnnxModel,
    config: RunConfig,
    shards: ShardStore,
) -> list[PrefectFuture[ShardEmbeddings]]:
    """An embed task a shard, each starting once its shard's inspection (a result, or a
    future of one) is there."""
    share_model(model, shards)
    with engine.embed_placement():
        return submit_shards(
            runner,
            embed_shard,
            {"inspection": list(inspections)},
            {
                "model": model,
                "config": config.embedding,
                "shards": shards,
                "threads": engine.embed_threads(runner),
            },
        )


def run_shard_store(config: RunConfig) -> ShardStore:
    """Where the per-shard stages' results live (execution.shard_store)."""
    if config.execution.shards_in_output:
        root = f"{config.output_uri.rstrip('/')}/{SHARDS_FOLDER}"
        return ShardStore(root=root, aws_credentials=config.aws_credentials if is_s3_uri(root) else None)
    return ShardStore(root=str(config.cache_path))


def reuses_datapool_model(config: RunConfig) -> bool:
    """Whether new samples are embedded with the datapool's model (when it has one)."""
    return not config.process_all and not config.training.retrain


@flow(
    name="curate",
    # Prefect 3.8 types the runner generically; the instance is what it expects.
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_TASK_WORKERS),  # type: ignore[arg-type]
    description="Train, embed, inspect and select a diverse, clean subset of the new images in a "
    "folder or S3 prefix, remembering what was processed in a datapool.",
)
def curate(
    source: Annotated[str, run_field("source")],
    output: Annotated[str | None, run_field("output")] = None,
    n_samples: Annotated[int | None, run_field("n_samples")] = None,
    proportion: Annotated[float | None, run_field("proportion")] = None,
    datapool: Annotated[str | None, run_field("datapool")] = None,
    process_all: Annotated[bool, run_field("process_all")] = False,
    aws_credentials: Annotated[str | None, run_field("aws_credentials")] = None,
    cache_dir: Annotated[str | None, run_field("cache_dir")] = None,
    inputs: InputsConfig = InputsConfig(),  # noqa: B008 (frozen model: a safe default)
    checks: ChecksConfig = ChecksConfig(),  # noqa: B008
    training: TrainingConfig = TrainingConfig(),  # noqa: B008
    embedding: EmbeddingConfig = EmbeddingConfig(),  # noqa: B008
    selection: SelectionConfig = SelectionConfig(),  # noqa: B008
    video: VideoConfig = VideoConfig(),  # noqa: B008
    report: ReportConfig = ReportConfig(),  # noqa: B008
    execution: ExecutionConfig = ExecutionConfig(),  # noqa: B008
) -> dict[str, Any]:
    """Curate `source`: a folder or s3://bucket/prefix of images and videos.

    Args:
        source: folder or s3://bucket/prefix of images and videos to curate.
        output: folder or s3://bucket/prefix for runs and the datapool (default: a folder named after
            the source, under winnow-output).
        n_samples: how many new samples to select this run.
        proportion: share of this run's new clean samples to select, instead of n_samples.
        datapool: name of the datapool block (default: named after the output).
        process_all: forget the datapool and process every sample again.
        aws_credentials: name of a prefect-aws AwsCredentials block for S3.
        cache_dir: local folder for decoded images, models and embeddings.
        inputs: which files, and shard size.
        checks: corruption and duplicate checks.
        training: the self-supervised model and its training.
        embedding: ONNX Runtime embedding.
        selection: greedy k-center selection.
        video: how frames are sampled from videos, sequence selection, the frames' file format.
        report: the run report (report.html, report.pdf, report.json).
        execution: where the per-shard stages run: this process's threads or a Dask cluster.

    Returns:
        The run record written to run.json.
    """
    config = build_config(
        source=source,
        output=output,
        n_samples=n_samples,
        proportion=proportion,
        datapool=datapool,
        process_all=process_all,
        aws_credentials=aws_credentials,
        cache_dir=cache_dir,
        inputs=inputs,
        checks=checks,
        training=training,
        embedding=embedding,
        selection=selection,
        video=video,
        report=report,
        execution=execution,
    )
    with shard_engine(config.execution) as engine:
        return run_stages(config, engine)


def run_stages(config: RunConfig, engine: ShardEngine) -> dict[str, Any]:
    """The run, stage by stage, inside the curate flow run; the per-shard stages on `engine`."""
    started_at = datetime.now(UTC).isoformat()
    run_id = new_run_id()
    cache, output_uri, credentials = config.cache_path, config.output_uri, config.aws_credentials
    shards = run_shard_store(config)
    work_dir = cache / "runs" / run_id
    progress, timer, telemetry = RunProgress(), StageTimer(), StageTelemetry()
    if engine.start_seconds is not None:
        timer.seconds["cluster_start"] = engine.start_seconds
    cached: dict[str, str] = {}

    with timer.stage("discover"):
        start = open_datapool(
            config.datapool_name,
            config.source,
            output_uri,
            credentials,
            config.process_all,
            reuses_datapool_model(config),
            cache,
        )
        listing = discover(config.source, credentials, config.inputs.relevant_filenames, cache)
        reprocess_all = config.process_all or (start.state.model_onnx is not None and config.training.retrain)
        run_plan = plan(listing, start.manifest, reprocess_all, config.inputs.shard_size, shards, cache)
        input_size = start.model.input_size if start.model else config.training.input_size
        user_inputs = selection_inputs(
            config.selection, config.source, credentials, listing, input_size, config.checks, cache
        )
        progress.update("discover", 1, 1)

    with engine.runners() as runners:
        inspect_futures = submit_shards(
            runners.inspect,
            inspect_shard,
            {"shard": run_plan.shards},
            {
                "source": config.source,
                "aws_credentials": credentials,
                "input_size": input_size,
                "checks": config.checks,
                "video": config.video,
                "shards": shards,
            },
        )
        # With the datapool's model known before any image is decoded, a shard is embedded
        # as soon as it is inspected: decoding (the CPU) overlaps embedding (the GPU).
        overlapped = start.model is not None
        embed_futures = (
            submit_embeddings(engine, runners.embed, inspect_futures, start.model, config, shards)
            if start.model is not None
            else []
        )
        with timer.stage("inspect"), telemetry.stage("inspect") if overlapped else nullcontext():
            inspections, inspect_states = gather_shards(
                inspect_futures, lambda done, total: progress.update("inspect", done, total)
            )
            cached["inspect"] = cached_share(inspect_states)
            samples = collect_samples(inspections, config.checks, known_content_hashes(run_plan), cache)

        trained: TrainedModel | None = None
        if start.model is not None:
            onnx_model = fp32_model = start.model
        else:
            if samples.ok == 0:
                raise ValueError(
                    f"source {config.source!r}: none of its {samples.processed} samples could be decoded"
                )
            with timer.stage("train"), telemetry.stage("train"):
                train_state = train(inspections, samples, config.training, cache, return_state=True)
                trained, cached["train"] = train_state.result(), cached_share([train_state])
                progress.update("train", 1, 1)
            with timer.stage("export"):
                export_state = export(trained, cache, return_state=True)
                onnx_model, cached["export"] = export_state.result(), cached_share([export_state])
                progress.update("export", 1, 1)
            fp32_model = onnx_model
            precision = embedding_precision(config.embedding, config.execution.gpu_resource is not None)
            if precision != "fp32":
                with timer.stage("quantize"):
                    quantize_state = quantize(
                        fp32_model, inspections, samples, precision, cache, return_state=True
                    )
                    onnx_model, cached["quantize"] = quantize_state.result(), cached_share([quantize_state])
            embed_futures = submit_embeddings(engine, runners.embed, inspections, onnx_model, config, shards)

        # Overlapped with inspection, this stage is only embedding's tail after it.
        with timer.stage("embed"), telemetry.stage("embed"):
            shard_embeddings, embed_states = gather_shards(
                embed_futures, lambda done, total: progress.update("embed", done, total)
            )
            cached["embed"] = cached_share(embed_states)
            if engine.address is not None:  # the flow's own sampler sees only its machine's GPU
                for device in sorted({s.device for s in shard_embeddings}):
                    sampled = [s.gpu for s in shard_embeddings if s.device == device and s.gpu]
                    telemetry.add_worker("embed", device, sampled)
            table = collect_embeddings(
                samples, shard_embeddings, onnx_model.embedding_dim, work_dir, cache / FETCHED_FOLDER
            )
            if user_inputs.query_images:
                user_inputs = embed_queries(user_inputs, onnx_model, config.embedding, work_dir)
    if config.checks.near_duplicate_distance is not None:
        with timer.stage("near_duplicates"):
            samples, table = remove_near_duplicates(
                samples, table, config.checks.near_duplicate_distance, run_plan, work_dir
            )

    with timer.stage("select"):
        chosen = select(
            table,
            config.target_count(table.count),
            config.selection,
            config.video.sequence_length,
            run_plan,
            samples,
            user_inputs,
            work_dir,
        )
        progress.update("select", 1, 1)

    manifest = next_manifest(run_plan, samples, table, selected_ids(chosen), run_id, work_dir)
    record = run_record(config, run_id, started_at, listing.count, run_plan, samples, table, chosen)
    record |= {
        "timings": timer.seconds,
        "model": model_record(onnx_model, trained, {s.provider for s in shard_embeddings}),
        "datapool": {
            "name": start.name,
            "base_version": start.state.version,
            "commits_version": start.state.version + 1,
            "samples_before": start.state.samples,
            "selected_before": start.state.selected,
            "model_reused": start.model is not None,
        }
        | {"samples_after": manifest.samples, "selected_after": manifest.selected},
        "cached_tasks": cached,
        "overlapped_stages": ["inspect", "embed"] if overlapped else [],
        "telemetry": telemetry.record(),
    }
    report_files: ReportFiles | None = None
    if config.report.enabled:
        with timer.stage("report"):
            report_files = render_report(record, samples, table, chosen, inspections, config.report, work_dir)
    record["report"] = report_record(config.report, report_files)
    files = RunFiles(
        samples=samples,
        embeddings=table,
        selection=chosen,
        onnx_model=onnx_model.path,
        fp32_onnx_model=fp32_model.path if fp32_model != onnx_model else None,
        checkpoint=trained.checkpoint if trained else None,
        listing=listing,
        report=report_files,
    )
    with timer.stage("publish"):
        artifacts = publish(
            config.source,
            output_uri,
            credentials,
            run_id,
            files,
            record,
            config.selection.copy_selected,
            config.video,
            cache,
        )
        progress.update("publish", 1, 1)

    with timer.stage("commit"):
        committed = commit_state(
            start,
            output_uri,
            credentials,
            manifest,
            model_pointers(start, onnx_model, artifacts),
            run_id,
            artifacts["run.json"],
        )
    record |= {"artifacts": artifacts, "finished_at": datetime.now(UTC).isoformat()}
    record["datapool"] |= {
        "version": committed.version,
        "samples": committed.samples,
        "selected": committed.selected,
    }

    create_table_artifact([record["counts"]], key="curate-counts", description="curate: counts")
    create_markdown_artifact(summary_markdown(record), key="curate-summary", description="curate: summary")
    if "report.html" in artifacts:
        create_link_artifact(
            report_link(artifacts["report.html"]),
            link_text=f"report of run {run_id}",
            key="curate-report",
            description="curate: the run report",
        )
    return record
