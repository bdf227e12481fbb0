"""`python -m flows curate ...`: the local way to run winnow, with a terminal progress bar."""

from __future__ import annotations

import copy
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

# The temporary server's telemetry heartbeat can find its SQLite database locked while the
# run writes, and print a traceback at start; it cannot reach its endpoint offline anyway.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Nor does winnow's CLI send Prefect's client usage data (or print its notice above the bars).
os.environ.setdefault("DO_NOT_TRACK", "1")

from flows.local_server import temporary_server
from tasks.config import RunConfig, describe_validation_error, set_field
from tasks.records.run import RunRecord, outcome

app = typer.Typer(add_completion=False, no_args_is_help=True, help="winnow: curate images.")


@app.callback()
def _main() -> None:
    """winnow: curate images into a small, diverse, clean subset."""


def merge_options(file_fields: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """YAML fields, overridden by the flags that were given (None means not given).

    A flag's name is its field's path, dots between sections ('training.epochs').
    """
    merged = copy.deepcopy(file_fields)
    for path, value in flags.items():
        if value is not None:
            set_field(merged, path, value)
    return merged


def load_config_file(path: Path) -> dict[str, Any]:
    """The fields of the YAML config file at `path`; a bad parameter if unreadable or not a mapping."""
    try:
        fields = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise typer.BadParameter(f"cannot read config file {path}: {error}") from error
    if not isinstance(fields, dict):
        raise typer.BadParameter(f"config file {path} must hold a mapping of fields")
    return fields


def lightly_or_own(fields: dict[str, Any], lightly_arguments: list[str]) -> dict[str, Any]:
    """The run's fields: as given, or mapped from a Lightly Worker configuration and arguments.

    What was accepted from a Lightly configuration without a field of its own is said on
    stderr; a key winnow cannot honour is a usage error naming it.
    """
    from tasks.lightly_worker import LightlyConfigError, is_lightly_config, translate, with_overrides

    if not lightly_arguments and not is_lightly_config(fields):
        return fields
    try:
        translation = translate(with_overrides(fields, lightly_arguments))
    except LightlyConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for note in translation.notes:
        typer.echo(f"note: {note}", err=True)
    return translation.fields


@app.command(name="curate")
def curate_command(
    source: Annotated[str | None, typer.Option(help="Folder or s3://bucket/prefix of images.")] = None,
    output: Annotated[
        str | None,
        typer.Option(help="Folder or s3://bucket/prefix for runs [default: winnow-output/<source name>]."),
    ] = None,
    n_samples: Annotated[int | None, typer.Option(help="How many new samples to select.")] = None,
    proportion: Annotated[float | None, typer.Option(help="Share of new clean samples to select.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file with the run's fields.")] = None,
    datapool: Annotated[
        str | None, typer.Option(help="Datapool block name [default: named after the output].")
    ] = None,
    process_all: Annotated[
        bool, typer.Option("--process-all", help="Forget the datapool; process everything.")
    ] = False,
    aws_credentials: Annotated[
        str | None, typer.Option(help="Name of a prefect-aws AwsCredentials block for S3.")
    ] = None,
    cache_dir: Annotated[
        str | None, typer.Option(help="Local cache folder [default: <output>/cache].")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs, at most.")] = None,
    budget_minutes: Annotated[
        float | None,
        typer.Option(help="Training's time budget in minutes [default: 10 on the CPU, 120 on a GPU]."),
    ] = None,
    no_train: Annotated[bool, typer.Option("--no-train", help="Skip training.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No stage display.")] = False,
    lightly_arguments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[KEY=VALUE]...",
            help="Lightly Worker arguments as docker run took them (selection_config.n_samples=50, "
            "datasource.process_all=True, ...).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Curate the new images of a folder or S3 prefix: train, embed, inspect and select.

    --config also takes a Lightly Worker configuration (worker_config, selection_config,
    lightly_config) as it is; see the README, "Coming from the Lightly Worker".
    """
    fields = merge_options(
        lightly_or_own(load_config_file(config) if config else {}, lightly_arguments or []),
        {
            "source": source,
            "output": output,
            "n_samples": n_samples,
            "proportion": proportion,
            "datapool": datapool,
            "process_all": True if process_all else None,
            "aws_credentials": aws_credentials,
            "cache_dir": cache_dir,
            "training.epochs": epochs,
            "training.budget_minutes": budget_minutes,
            "training.enabled": False if no_train else None,
        },
    )
    try:
        run_config = RunConfig(**fields)
    except ValidationError as error:
        typer.echo(describe_validation_error(error), err=True)
        raise typer.Exit(2) from None
    record = run_curate(run_config, show_progress=not quiet)
    artifacts = record.artifacts or {}
    typer.echo(outcome(record.counts, record.selection.note))
    typer.echo(f"selected: {artifacts['selected_filenames.txt']}")
    if "report.html" in artifacts:
        typer.echo(f"report: {artifacts['report.html']}")


def run_curate(config: RunConfig, show_progress: bool) -> RunRecord:
    """Run the curate flow on `config` in this process, showing its stages unless asked not to."""
    parameters = {name: getattr(config, name) for name in RunConfig.model_fields}
    # Without a Prefect server to talk to, the CLI starts one that ends with it, killed or not.
    with temporary_server():
        # Imported here: importing Prefect takes seconds (--help should not), and its
        # settings must see the temporary server's address.
        from flows.curate import curate as curate_flow
        from flows.terminal import stage_display
        from tasks.datapool.state import DatapoolConflictError
        from tasks.storage.interface import StorageError

        try:
            with stage_display() if show_progress else nullcontext():
                return RunRecord.model_validate(curate_flow(**parameters))
        except (DatapoolConflictError, StorageError, ValueError) as error:
            failure = str(error)
        finally:
            drain_to_server()
    # What the user can act on (lost a race, a bucket, a bad source) ends the output in one
    # line, after the traceback Prefect logged.
    typer.echo(f"error: {failure}", err=True)
    raise typer.Exit(1)


def drain_to_server() -> None:
    """Send the log lines and events Prefect still queues, while the temporary server is up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()


def main() -> None:
    """Run the winnow command line."""
    app()
