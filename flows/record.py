"""The run record's sections, and the markdown summary a flow run shows.

The sections are built from what the phases return.
"""

from __future__ import annotations

from tasks.datapool.state import NextManifest, PoolStart
from tasks.publish.links import ResultLink, links_markdown
from tasks.records.embeddings import EmbeddingTable
from tasks.records.model import OnnxModel, TrainedModel
from tasks.records.plan import RunPlan
from tasks.records.report import ReportFiles
from tasks.records.run import (
    Counts,
    DatapoolSummary,
    ModelSummary,
    ReportOff,
    ReportWritten,
    RunRecord,
    SelectionSummary,
    TrainedModelSummary,
)
from tasks.records.samples import SampleTable
from tasks.records.selection import Selection
from tasks.report.data import embedded_per_second, quality_rows


def summary_markdown(record: RunRecord, links: list[ResultLink]) -> str:
    """The flow run's summary artifact: counts, datapool, model, quality, time, report."""
    counts, model, pool = record.counts, record.model, record.datapool
    lines = [
        f"# winnow run {record.run_id}",
        f"Source `{record.source}` -> `{record.output}`",
        "",
        "| discovered | new | moved | corrupt | duplicates | missing | unreadable | embedded | selected |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {counts.discovered} | {counts.new} | {counts.moved} | {counts.corrupt} | {counts.duplicates} "
        f"| {counts.missing} | {counts.unreadable} | {counts.embedded} | {counts.selected} |",
        "",
        "Discovered and new count files; embedded and selected count samples: an image, or a "
        "frame sampled from a video.",
        "",
        f"Datapool `{pool.name}`: version {pool.base_version} -> {pool.version}, "
        f"{pool.samples} samples, {pool.selected} selected in all.",
        "",
        f"Model: {model.embedding_dim}-d embeddings, ONNX sha256 `{model.onnx_sha256[:12]}`, "
        f"{model.precision}, "
        + (
            f"embedded with {model.execution_provider}."
            if model.execution_provider
            else "nothing embedded (no new samples)."
        ),
    ]
    quality = record.selection.quality
    if quality["selected"]["coverage"] is not None:
        lines += [
            "",
            f"| against {len(quality['random_seeds'])} random subsets of the same size | selected "
            "| random (mean ± std) |",
            "| --- | --- | --- |",
            *(
                f"| {name} | {mine:.4f} | {mean:.4f} ± {std:.4f} |"
                for name, mine, mean, std in quality_rows(quality)
            ),
        ]
    if record.selection.note:
        lines += ["", f"Note: {record.selection.note}"]
    speed = embedded_per_second(record)
    lines += [
        "",
        f"Took {sum(record.timings.values()):.1f} s"
        + (f"; embedded {speed:.0f} images/s" if speed else "")
        + ".",
    ]
    lines += ["", links_markdown(links, heading="## Results")]
    if isinstance(record.report, ReportWritten) and record.report.pdf_note:
        lines += ["", f"No report.pdf: {record.report.pdf_note}"]
    return "\n".join(lines)


def report_summary(files: ReportFiles | None) -> ReportWritten | ReportOff:
    """run.json's `report`: whether it was written, and why there is no PDF when there is none."""
    if files is None:
        return ReportOff()
    return ReportWritten(pdf=files.pdf is not None, pdf_note=files.pdf_note)


def counts(
    discovered: int, run_plan: RunPlan, samples: SampleTable, table: EmbeddingTable, chosen: Selection
) -> Counts:
    """How many samples the run found, and what became of them."""
    return Counts(
        discovered=discovered,
        new=run_plan.new,
        corrupt=samples.corrupt,
        duplicates=samples.duplicates,
        missing=samples.missing,
        unreadable=samples.unreadable,
        moved=samples.moved,
        embedded=table.count,
        selected=chosen.selected,
    )


def selection_summary(chosen: Selection) -> SelectionSummary:
    """What was asked of selection, what it picked from, and the picks' quality."""
    return SelectionSummary(
        requested=chosen.requested,
        candidates=chosen.candidates,
        note=chosen.note,
        quality=chosen.quality,
        device=chosen.device,
    )


def datapool_summary(start: PoolStart, manifest: NextManifest) -> DatapoolSummary:
    """The datapool before the run, and after it once it commits."""
    return DatapoolSummary(
        name=start.name,
        base_version=start.state.version,
        commits_version=start.state.version + 1,
        samples_before=start.state.samples,
        selected_before=start.state.selected,
        model_reused=start.model is not None,
        samples_after=manifest.samples,
        selected_after=manifest.selected,
    )


def model_summary(
    model: OnnxModel, trained: TrainedModel | None, providers: set[str]
) -> ModelSummary | TrainedModelSummary:
    """The model that embedded the run's samples, and its training when this run trained it."""
    summary = ModelSummary(
        onnx_sha256=model.sha256,
        embedding_dim=model.embedding_dim,
        input_size=model.input_size,
        execution_provider=",".join(sorted(providers)),
        precision=model.precision,
        min_cosine_to_fp32=model.min_cosine_to_fp32,
        onnx_parity_max_abs_diff=model.parity_max_abs_diff,
        source="the datapool's",
    )
    if trained is None:
        return summary
    return TrainedModelSummary(
        **(
            summary.model_dump()
            | {"source": "trained by this run" if trained.trained else "untrained or given checkpoint"}
        ),
        trained=trained.trained,
        training_images=trained.images,
        training_epochs=trained.epochs,
        training_budget_reached=trained.budget_reached,
        training_images_per_second=round(trained.images_per_second, 2),
        training_device=trained.device,
        final_loss=trained.final_loss,
    )
