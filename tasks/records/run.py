"""The run record: run.json, what the flow returns, and what the report and summary read.

One pydantic model, written and read through it. A section that a run does not fill
(a model it did not train, the datapool's version before the commit, the artifacts before
publish) is left out of the JSON rather than written as null.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


def _absent(value: object) -> bool:
    return value is None


class Counts(BaseModel, frozen=True):
    """How many samples the run found, and what became of them."""

    discovered: int
    new: int
    corrupt: int
    duplicates: int
    missing: int
    unreadable: int = 0  # absent from run.json files written before it was counted
    moved: int = 0  # datapool samples found again under a new key (moved or renamed)
    embedded: int
    selected: int


def counted(count: int, noun: str) -> str:
    """'1 duplicate', '3 duplicates'."""
    return f"{count} {noun if count == 1 else noun + 's'}"


def outcome(counts: Counts, note: str | None = None) -> str:
    """One line saying what the run did, for the terminal and the flow run's final state.

    Files are discovered; samples (an image, or a frame sampled from a video) are embedded
    and selected, so a run over videos embeds more samples than it found files.
    """
    problems = [
        counted(counts.corrupt, "corrupt file"),
        counted(counts.duplicates, "duplicate"),
        *([f"{counts.unreadable} unreadable (see unreadable.json)"] if counts.unreadable else []),
        *([f"{counts.moved} moved"] if counts.moved else []),
    ]
    line = (
        f"selected {counts.selected} of {counted(counts.embedded, 'new clean sample')} "
        f"(a sample is an image or a video frame); {counted(counts.discovered, 'file')} found, "
        f"{counts.new} new; {', '.join(problems)}"
    )
    return f"{line}. {note}" if note else line


class SelectionSummary(BaseModel, frozen=True):
    """What was asked of selection, what it had to pick from, and how good the picks are."""

    requested: int
    candidates: int
    note: str | None
    quality: dict[str, Any]
    device: str


class ModelSummary(BaseModel, frozen=True):
    """The model that embedded the run's samples."""

    onnx_sha256: str
    embedding_dim: int
    input_size: int
    execution_provider: str
    precision: str
    min_cosine_to_fp32: float | None
    onnx_parity_max_abs_diff: float | None
    source: str


class TrainedModelSummary(ModelSummary, frozen=True):
    """The model, trained (or initialised) by this run, with its training's figures."""

    trained: bool
    training_images: int
    training_epochs: int
    # Whether training.budget_minutes ended the training before its epochs did.
    training_budget_reached: bool = False
    training_images_per_second: float
    training_device: str
    final_loss: float | None


class DatapoolSummary(BaseModel, frozen=True):
    """The datapool before and after the run; `version`, `samples` and `selected` once committed."""

    name: str
    base_version: int
    commits_version: int
    samples_before: int
    selected_before: int
    model_reused: bool
    samples_after: int
    selected_after: int
    version: int | None = Field(None, exclude_if=_absent)
    samples: int | None = Field(None, exclude_if=_absent)
    selected: int | None = Field(None, exclude_if=_absent)


class ReportWritten(BaseModel, frozen=True):
    """The report was written; `pdf_note` says why there is no PDF when there is none."""

    enabled: Literal[True] = True
    pdf: bool
    pdf_note: str | None


class ReportOff(BaseModel, frozen=True):
    """The run wrote no report (report.enabled is off)."""

    enabled: Literal[False] = False


class SelectedFrames(BaseModel, frozen=True):
    """How many video frames were selected, and how many of them were written as images."""

    selected: int
    written: int


class RunRecord(BaseModel, frozen=True):
    """One run, as run.json holds it.

    `artifacts` and `finished_at` come with publishing, the datapool's new version with the commit.
    """

    run_id: str
    # published: every file is written, the datapool not yet committed (a run that died
    # there); committed: the datapool holds its picks; conflict: another run committed
    # first and this one's picks are not in the pool (`error` says which run).
    status: Literal["published", "committed", "conflict"]
    source: str
    output: str
    config: dict[str, Any]
    counts: Counts
    selection: SelectionSummary
    started_at: str
    timings: dict[str, float]
    model: TrainedModelSummary | ModelSummary = Field(union_mode="left_to_right")
    datapool: DatapoolSummary
    cached_tasks: dict[str, str]
    overlapped_stages: list[str]
    telemetry: dict[str, Any]
    # None while the report is being written from the record itself.
    report: ReportWritten | ReportOff | None = Field(None, discriminator="enabled", exclude_if=_absent)
    artifacts: dict[str, str] | None = Field(None, exclude_if=_absent)
    selected_frames: SelectedFrames | None = Field(None, exclude_if=_absent)
    finished_at: str | None = Field(None, exclude_if=_absent)
    error: str | None = Field(None, exclude_if=_absent)

    def to_json(self) -> str:
        """run.json's text."""
        return self.model_dump_json(indent=2)
