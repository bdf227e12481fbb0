"""The curate flow's phases.

Each runs its stages' tasks and returns a typed record of what the next phase needs:

    prepare -> Planned -> inspect_and_embed -> Embedded -> choose -> Chosen -> finish -> RunRecord

and `announce` shows the record in the Prefect UI. Every computation is a task of a room
in tasks/; a phase only decides which task runs next and with what.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import State
from prefect.task_runners import TaskRunner

from flows.engine import ShardEngine, gather_shards, submit_shards
from flows.progress import RunProgress
from flows.record import (
    counts,
    datapool_summary,
    model_summary,
    report_summary,
    selection_summary,
    summary_markdown,
)
from tasks.config import RunConfig
from tasks.datapool.block import Datapool
from tasks.datapool.stage import commit_state, maintain_datapool, next_manifest, open_datapool
from tasks.datapool.state import DatapoolConflictError, PoolStart, model_pointers
from tasks.ingest.stage import discover, plan
from tasks.media.stage import collect_samples, inspect_shard
from tasks.model_runtime.embedding import share_model
from tasks.model_runtime.sessions import embedding_precision
from tasks.model_runtime.stage import collect_embeddings, embed_queries, embed_shard, export, quantize, train
from tasks.model_runtime.telemetry import StageTelemetry
from tasks.model_runtime.training import budget_seconds, training_device
from tasks.publish.files import RunFiles
from tasks.publish.links import links_markdown
from tasks.publish.stage import copy_selected, publish, record_run, share_results
from tasks.records.embeddings import EmbeddingTable, ShardEmbeddings
from tasks.records.model import OnnxModel, TrainedModel
from tasks.records.plan import RunPlan
from tasks.records.run import RunRecord, outcome
from tasks.records.samples import SampleTable, ShardInspection
from tasks.records.selection import Selection, SelectionInputs, selected_ids
from tasks.records.shards import Listing
from tasks.report.stage import render_gallery, render_report
from tasks.selection.stage import remove_near_duplicates, select, selection_inputs
from tasks.storage.interface import StorageError
from tasks.storage.shard_store import FETCHED_FOLDER, SHARDS_FOLDER, ShardStore
from tasks.storage.uri import is_s3_uri

logger = logging.getLogger(__name__)


class StageTimer:
    """Seconds each stage took, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage `name`."""
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


def run_shard_store(config: RunConfig) -> ShardStore:
    """Where the per-shard stages' results live (execution.shard_store)."""
    if config.execution.shards_in_output:
        root = f"{config.output_uri.rstrip('/')}/{SHARDS_FOLDER}"
        return ShardStore(root=root, aws_credentials=config.aws_credentials if is_s3_uri(root) else None)
    return ShardStore(root=str(config.cache_path))


def reuses_datapool_model(config: RunConfig) -> bool:
    """Whether new samples are embedded with the datapool's model (when it has one)."""
    return not config.process_all and not config.training.retrain


@dataclass
class RunContext:
    """What every phase of one run shares: its identity, where it works, and its clocks."""

    config: RunConfig
    engine: ShardEngine
    run_id: str = field(default_factory=new_run_id)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    progress: RunProgress = field(default_factory=RunProgress)
    timer: StageTimer = field(default_factory=StageTimer)
    telemetry: StageTelemetry = field(default_factory=StageTelemetry)
    cached: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.engine.start_seconds is not None:
            self.timer.seconds["cluster_start"] = self.engine.start_seconds

    @property
    def cache(self) -> Path:
        """The run's local cache folder."""
        return self.config.cache_path

    @property
    def work_dir(self) -> Path:
        """This run's own folder in the cache."""
        return self.cache / "runs" / self.run_id

    @property
    def shards(self) -> ShardStore:
        """Where the per-shard stages' results live."""
        return run_shard_store(self.config)


@dataclass(frozen=True)
class Planned:
    """The datapool the run starts from, the source's listing and the run's shards."""

    start: PoolStart
    listing: Listing
    run_plan: RunPlan
    input_size: int
    inputs: SelectionInputs


@dataclass(frozen=True)
class Embedded:
    """Every new sample inspected, the model, and the clean samples' embeddings."""

    inspections: list[ShardInspection]
    samples: SampleTable
    table: EmbeddingTable
    model: OnnxModel
    fp32_model: OnnxModel
    trained: TrainedModel | None
    providers: set[str]
    inputs: SelectionInputs
    overlapped: bool


@dataclass(frozen=True)
class Chosen:
    """The samples and embeddings after the near-duplicate check, and the picks among them."""

    samples: SampleTable
    table: EmbeddingTable
    selection: Selection


def prepare(run: RunContext) -> Planned:
    """Open the datapool, list the source, plan the shards, read the user's selection inputs."""
    config = run.config
    with run.timer.stage("discover"):
        run.progress.start("discover", f"listing {config.source}")
        start = open_datapool(
            config.datapool_name,
            config.source,
            config.output_uri,
            config.aws_credentials,
            config.process_all,
            reuses_datapool_model(config),
            run.cache,
        )
        listing = discover(
            config.source,
            config.aws_credentials,
            config.inputs.relevant_filenames,
            config.excluded_from_source,
            run.cache,
        )
        reprocess_all = config.process_all or (start.state.model_onnx is not None and config.training.retrain)
        run_plan = plan(
            listing,
            start.segments,
            start.indexes,
            reprocess_all,
            config.inputs.shard_size,
            run.shards,
            run.cache,
        )
        input_size = start.model.input_size if start.model else config.training.input_size
        inputs = selection_inputs(
            config.selection,
            config.source,
            config.aws_credentials,
            listing,
            input_size,
            config.checks,
            run.cache,
        )
        run.progress.update("discover", 1, 1, f"{listing.count} files, {run_plan.new} new")
    return Planned(start=start, listing=listing, run_plan=run_plan, input_size=input_size, inputs=inputs)


def submit_embeddings(
    run: RunContext,
    runner: TaskRunner[Any],
    inspections: Sequence[ShardInspection | PrefectFuture[ShardInspection]],
    model: OnnxModel,
) -> list[PrefectFuture[ShardEmbeddings]]:
    """An embed task a shard, each starting once its shard's inspection is there.

    The inspection may be a result, or a future of one.
    """
    share_model(model, run.shards)
    run.progress.start("embed", f"{len(inspections)} shards")
    with run.engine.embed_placement():
        return submit_shards(
            runner,
            embed_shard,
            {"inspection": list(inspections)},
            {
                "model": model,
                "config": run.config.embedding,
                "shards": run.shards,
                "threads": run.engine.embed_threads(runner),
            },
        )


def trained_model(
    run: RunContext, inspections: list[ShardInspection], samples: SampleTable
) -> tuple[OnnxModel, OnnxModel, TrainedModel]:
    """Train, export and (when asked) quantize.

    Returns (the model to embed with, its fp32 graph, the training's record).
    """
    config = run.config
    if samples.ok == 0:
        raise ValueError(
            f"source {config.source!r}: none of its {samples.processed} samples could be decoded"
        )
    with run.timer.stage("train"), run.telemetry.stage("train"):
        device = training_device(config.training.device)
        budget = f"{budget_seconds(config.training, device) / 60:g} min on {device.type}"
        epochs = f"at most {config.training.epochs} epochs or {budget}" if config.training.enabled else "off"
        run.progress.start("train", f"{samples.ok} clean samples, {epochs}")
        train_state = train(inspections, samples, config.training, run.cache, return_state=True)
        trained, run.cached["train"] = train_state.result(), cached_share([train_state])
        loss = f", loss {trained.final_loss:.4f}" if trained.final_loss is not None else ""
        run.progress.update("train", 1, 1, f"done{loss}")
    with run.timer.stage("export"):
        run.progress.start("export", "to ONNX")
        export_state = export(trained, run.cache, return_state=True)
        fp32_model, run.cached["export"] = export_state.result(), cached_share([export_state])
        run.progress.update("export", 1, 1, "ONNX model written")
    precision = embedding_precision(config.embedding, config.execution.gpu_resource is not None, samples.ok)
    if precision == "fp32":
        return fp32_model, fp32_model, trained
    with run.timer.stage("quantize"):
        quantize_state = quantize(fp32_model, inspections, samples, precision, run.cache, return_state=True)
        model, run.cached["quantize"] = quantize_state.result(), cached_share([quantize_state])
    return model, fp32_model, trained


def inspect_and_embed(run: RunContext, planned: Planned) -> Embedded:
    """Inspect every new shard, and embed them.

    Embed them with the datapool's model while they are inspected, or train a model on them first.
    """
    config, start = run.config, planned.start
    shard_count = len(planned.run_plan.shards)
    run.progress.start("inspect", f"{planned.run_plan.new} new files in {shard_count} shards")
    with run.engine.runners() as runners:
        inspect_futures = submit_shards(
            runners.inspect,
            inspect_shard,
            {"shard": planned.run_plan.shards},
            {
                "source": config.source,
                "aws_credentials": config.aws_credentials,
                "input_size": planned.input_size,
                "checks": config.checks,
                "video": config.video,
                "shards": run.shards,
            },
        )
        # With the datapool's model known before any image is decoded, a shard is embedded
        # as soon as it is inspected: decoding (the CPU) overlaps embedding (the GPU).
        overlapped = start.model is not None
        embed_futures = (
            submit_embeddings(run, runners.embed, inspect_futures, start.model)
            if start.model is not None
            else []
        )
        with run.timer.stage("inspect"), run.telemetry.stage("inspect") if overlapped else nullcontext():
            inspections, inspect_states = gather_shards(
                inspect_futures,
                lambda done, total: run.progress.update("inspect", done, total, f"shard {done}/{total}"),
            )
            run.cached["inspect"] = cached_share(inspect_states)
            samples = collect_samples(
                inspections,
                config.checks,
                planned.run_plan,
                run.cache,
            )

        trained: TrainedModel | None = None
        if start.model is not None:
            model = fp32_model = start.model
        else:
            model, fp32_model, trained = trained_model(run, inspections, samples)
            embed_futures = submit_embeddings(run, runners.embed, inspections, model)

        # Overlapped with inspection, this stage is only embedding's tail after it.
        with run.timer.stage("embed"), run.telemetry.stage("embed"):
            shard_embeddings, embed_states = gather_shards(
                embed_futures,
                lambda done, total: run.progress.update("embed", done, total, f"shard {done}/{total}"),
            )
            run.cached["embed"] = cached_share(embed_states)
            if run.engine.address is not None:  # the flow's own sampler sees only its machine's GPU
                for device in sorted({s.device for s in shard_embeddings}):
                    sampled = [s.gpu for s in shard_embeddings if s.device == device and s.gpu]
                    run.telemetry.add_worker("embed", device, sampled)
            table = collect_embeddings(
                samples, shard_embeddings, model.embedding_dim, run.work_dir, run.cache / FETCHED_FOLDER
            )
            inputs = planned.inputs
            if inputs.query_images:
                inputs = embed_queries(inputs, model, config.embedding, run.work_dir)
    return Embedded(
        inspections=inspections,
        samples=samples,
        table=table,
        model=model,
        fp32_model=fp32_model,
        trained=trained,
        providers={s.provider for s in shard_embeddings},
        inputs=inputs,
        overlapped=overlapped,
    )


def choose(run: RunContext, planned: Planned, embedded: Embedded) -> Chosen:
    """Remove near duplicates (when asked), then select."""
    config = run.config
    samples, table = embedded.samples, embedded.table
    if config.checks.near_duplicate_distance is not None:
        with run.timer.stage("near_duplicates"):
            samples, table = remove_near_duplicates(
                samples, table, config.checks.near_duplicate_distance, planned.run_plan, run.work_dir
            )
    with run.timer.stage("select"):
        run.progress.start("select", f"from {table.count} new clean samples")
        selection = select(
            table,
            config.target_count(table.count),
            config.selection,
            config.video.sequence_length,
            planned.run_plan,
            samples,
            embedded.inputs,
            run.work_dir,
        )
        run.progress.update("select", 1, 1, f"{selection.selected} picked")
    return Chosen(samples=samples, table=table, selection=selection)


def finish(run: RunContext, planned: Planned, embedded: Embedded, chosen: Chosen) -> RunRecord:
    """Publish the run, commit the datapool, then copy the picks and record the run as committed.

    The datapool's next manifest and the run record come first, then the report. Every file
    is published with run.json saying `published`; the commit follows; the selected images
    are copied only then, and run.json is rewritten as `committed` last (or as `conflict`
    when another run committed first: its picks are not in the pool).
    """
    config, start = run.config, planned.start
    manifest = next_manifest(
        planned.run_plan,
        chosen.samples,
        chosen.table,
        selected_ids(chosen.selection),
        run.run_id,
        run.work_dir,
    )
    record = RunRecord(
        run_id=run.run_id,
        status="published",
        source=config.source,
        output=config.output_uri,
        config=config.model_dump(mode="json"),
        counts=counts(
            planned.listing.count, planned.run_plan, chosen.samples, chosen.table, chosen.selection
        ),
        selection=selection_summary(chosen.selection),
        started_at=run.started_at,
        timings=run.timer.seconds,
        model=model_summary(embedded.model, embedded.trained, embedded.providers),
        datapool=datapool_summary(start, manifest),
        cached_tasks=run.cached,
        overlapped_stages=["inspect", "embed"] if embedded.overlapped else [],
        telemetry=run.telemetry.record(),
    )
    report_files = None
    if config.report.enabled:
        with run.timer.stage("report"):
            report_files = render_report(
                record,
                chosen.samples,
                chosen.table,
                chosen.selection,
                embedded.inspections,
                config.report,
                run.work_dir,
            )
    record = record.model_copy(
        update={"report": report_summary(report_files), "timings": dict(run.timer.seconds)}
    )
    files = RunFiles(
        samples=chosen.samples,
        embeddings=chosen.table,
        selection=chosen.selection,
        onnx_model=embedded.model.path,
        fp32_onnx_model=embedded.fp32_model.path if embedded.fp32_model != embedded.model else None,
        checkpoint=embedded.trained.checkpoint if embedded.trained else None,
        listing=planned.listing,
        report=report_files,
    )
    with run.timer.stage("publish"):
        run.progress.start("publish", f"to {config.output_uri}")
        record = publish(
            config.source,
            config.output_uri,
            config.aws_credentials,
            run.run_id,
            files,
            record,
            config.video,
            run.cache,
            config.output_layout,
        )
        run.progress.update("publish", 1, 1, "published")
    artifacts = dict(record.artifacts or {})
    with run.timer.stage("commit"):
        try:
            committed = commit_state(
                start,
                config.output_uri,
                config.aws_credentials,
                manifest,
                model_pointers(start, embedded.model, artifacts),
                run.run_id,
                artifacts["run.json"],
            )
        except DatapoolConflictError as error:
            lost = {"status": "conflict", "error": str(error), "artifacts": artifacts}
            record_run(config.output_uri, config.aws_credentials, record.model_copy(update=lost))
            raise
    if config.selection.copy_selected:  # only now: copies never run ahead of the datapool
        with run.timer.stage("copy_selected"):
            artifacts |= copy_selected(
                config.source, config.output_uri, config.aws_credentials, run.run_id, files
            )
    with run.timer.stage("compact"):
        tidy_datapool(run, start, committed)
    datapool = record.datapool.model_copy(
        update={"version": committed.version, "samples": committed.samples, "selected": committed.selected}
    )
    final = record.model_copy(
        update={
            "status": "committed",
            "timings": dict(run.timer.seconds),
            "artifacts": artifacts,
            "finished_at": datetime.now(UTC).isoformat(),
            "datapool": datapool,
        }
    )
    record_run(config.output_uri, config.aws_credentials, final)
    run.progress.complete(outcome(final.counts, final.selection.note))
    return final


def tidy_datapool(run: RunContext, start: PoolStart, committed: Datapool) -> None:
    """Merge the datapool's segments past the threshold and apply retention, after the commit.

    The run's commit stands whatever happens here: a failure is a warning, and the next run
    tries again.
    """
    config = run.config
    try:
        maintain_datapool(
            start.name, config.output_uri, config.aws_credentials, committed, config.state, run.cache
        )
    except (StorageError, ConnectionError, RuntimeError) as error:
        logger.warning("datapool %r: merging or pruning its segments failed: %s", start.name, error)


def announce(run: RunContext, record: RunRecord, embedded: Embedded, chosen: Chosen) -> None:
    """The run's counts, summary, results and picks as artifacts of the flow run.

    The results open from the UI: through presigned links for an S3 output (their lifetime
    stated), as absolute paths for a local one; the picks show as a bounded gallery.
    """
    config = run.config
    links = share_results(record.artifacts or {}, config.aws_credentials, config.report.link_hours)
    create_table_artifact(
        [record.counts.model_dump()],
        key="curate-counts",
        description="curate: counts. Discovered and new count files; embedded and selected count "
        "samples (an image, or a frame sampled from a video).",
    )
    create_markdown_artifact(
        summary_markdown(record, links), key="curate-summary", description="curate: summary"
    )
    create_markdown_artifact(
        links_markdown(links), key="curate-results", description="curate: where the results are"
    )
    report = next((link for link in links if link.name == "report.html" and link.url), None)
    if report is not None and report.url is not None and report.expires is not None:
        create_link_artifact(
            report.url,
            link_text=f"report of run {record.run_id} (link works until {report.expires:%Y-%m-%d %H:%M} UTC)",
            key="curate-report",
            description="curate: the run report, through a presigned link",
        )
    gallery = render_gallery(chosen.samples, chosen.selection, embedded.inspections, config.report.gallery)
    if gallery is not None:
        create_markdown_artifact(gallery, key="curate-gallery", description="curate: the picks")
