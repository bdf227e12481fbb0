"""The curate flow: discover -> inspect -> train -> export -> embed -> select -> publish.

The flow validates its parameters into one RunConfig and runs the phases of
flows/phases.py in order; every computation is a task of a room in tasks/.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from prefect import flow
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from flows.engine import MAX_TASK_WORKERS, shard_engine
from flows.logs import winnow_logs_to_prefect
from flows.phases import RunContext, announce, choose, finish, inspect_and_embed, prepare
from tasks.config import (
    ChecksConfig,
    EmbeddingConfig,
    ExecutionConfig,
    InputsConfig,
    ReportConfig,
    RunConfig,
    SelectionConfig,
    StateConfig,
    TrainingConfig,
    VideoConfig,
    describe_validation_error,
)
from tasks.progress import listening
from tasks.records.run import outcome


def build_config(**fields: Any) -> RunConfig:
    """The validated configuration, or a ValueError naming each bad field."""
    try:
        return RunConfig(**fields)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from None


def run_field(name: str) -> FieldInfo:
    """RunConfig's field `name` (constraints, description) without its default.

    For the flow's signature: the deployment's parameter schema then refuses what RunConfig
    would refuse (n_samples=0, a datapool name that is not a slug) before a run is created.
    """
    info = copy.copy(RunConfig.model_fields[name])
    info.default = PydanticUndefined
    return info


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
    output_layout: Annotated[str, run_field("output_layout")] = "winnow",
    inputs: InputsConfig = InputsConfig(),  # noqa: B008 (frozen model: a safe default)
    checks: ChecksConfig = ChecksConfig(),  # noqa: B008
    training: TrainingConfig = TrainingConfig(),  # noqa: B008
    embedding: EmbeddingConfig = EmbeddingConfig(),  # noqa: B008
    selection: SelectionConfig = SelectionConfig(),  # noqa: B008
    video: VideoConfig = VideoConfig(),  # noqa: B008
    report: ReportConfig = ReportConfig(),  # noqa: B008
    state: StateConfig = StateConfig(),  # noqa: B008
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
        output_layout: winnow, or lightly to also write the files a Lightly Worker wrote.
        inputs: which files, and shard size.
        checks: corruption and duplicate checks.
        training: the self-supervised model and its training.
        embedding: ONNX Runtime embedding.
        selection: how many to pick, and by which strategies (REPRESENTATIVE k-medoids by default).
        video: how frames are sampled from videos, sequence selection, the frames' file format.
        report: the run report (report.html, report.pdf, report.json).
        state: when the datapool's manifest segments are merged, and how many versions stay readable.
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
        output_layout=output_layout,
        inputs=inputs,
        checks=checks,
        training=training,
        embedding=embedding,
        selection=selection,
        video=video,
        report=report,
        state=state,
        execution=execution,
    )
    with winnow_logs_to_prefect(), shard_engine(config.execution) as engine:
        run = RunContext(config=config, engine=engine)
        with listening(run.progress):
            planned = prepare(run)
            embedded = inspect_and_embed(run, planned)
            chosen = choose(run, planned, embedded)
            record = finish(run, planned, embedded, chosen)
        announce(run, record, embedded, chosen)
    # A returned state becomes the run's final one, its message shown in the UI; a caller
    # still gets the record itself (the state's data), so the declared type holds for them.
    return Completed(  # type: ignore[return-value]
        message=outcome(record.counts, record.selection.note), data=record.model_dump(mode="json")
    )
