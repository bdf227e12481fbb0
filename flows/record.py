"""The run record (run.json) and the markdown summary a flow run shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.config import ReportConfig, RunConfig
from tasks.records.embeddings import EmbeddingTable
from tasks.records.model import OnnxModel, TrainedModel
from tasks.records.plan import RunPlan
from tasks.records.report import ReportFiles
from tasks.records.samples import SampleTable
from tasks.records.selection import Selection
from tasks.report.data import embedded_per_second, quality_rows
from tasks.storage.uri import is_s3_uri


def summary_markdown(record: dict[str, Any]) -> str:
    counts, model, pool = record["counts"], record["model"], record["datapool"]
    lines = [
        f"# winnow run {record['run_id']}",
        f"Source `{record['source']}` -> `{record['output']}`",
        "",
        "| discovered | new | corrupt | duplicates | missing | embedded | selected |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {counts['discovered']} | {counts['new']} | {counts['corrupt']} | {counts['duplicates']} "
        f"| {counts['missing']} | {counts['embedded']} | {counts['selected']} |",
        "",
        f"Datapool `{pool['name']}`: version {pool['base_version']} -> {pool['version']}, "
        f"{pool['samples']} samples, {pool['selected']} selected in all.",
        "",
        f"Model: {model['embedding_dim']}-d embeddings, ONNX sha256 `{model['onnx_sha256'][:12]}`, "
        f"{model['precision']}, embedded with {model['execution_provider'] or 'nothing (no new samples)'}.",
    ]
    quality = record["selection"]["quality"]
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
    if record["selection"]["note"]:
        lines += ["", f"Note: {record['selection']['note']}"]
    speed = embedded_per_second(record)
    lines += [
        "",
        f"Took {sum(record['timings'].values()):.1f} s"
        + (f"; embedded {speed:.0f} images/s" if speed else "")
        + ".",
    ]
    if "report.html" in record["artifacts"]:
        lines += ["", f"Report: [report.html]({report_link(record['artifacts']['report.html'])})"]
    if record["report"].get("pdf_note"):
        lines += ["", f"No report.pdf: {record['report']['pdf_note']}"]
    return "\n".join(lines)


def report_link(uri: str) -> str:
    """Where the report opens: its s3:// URI (a presigned https URL would expire and carry a
    signature into the artifact), or a file:// URL for a local output."""
    return uri if is_s3_uri(uri) else Path(uri).resolve().as_uri()


def report_record(config: ReportConfig, files: ReportFiles | None) -> dict[str, Any]:
    """run.json's `report`: whether it was written, and why there is no PDF when there is none."""
    if files is None:
        return {"enabled": False}
    return {"enabled": True, "pdf": files.pdf is not None, "pdf_note": files.pdf_note}


def run_record(
    config: RunConfig,
    run_id: str,
    started_at: str,
    discovered: int,
    run_plan: RunPlan,
    samples: SampleTable,
    table: EmbeddingTable,
    chosen: Selection,
) -> dict[str, Any]:
    """The counts and identity of a run, as run.json holds them."""
    return {
        "run_id": run_id,
        "status": "completed",
        "source": config.source,
        "output": config.output_uri,
        "config": config.model_dump(mode="json"),
        "counts": {
            "discovered": discovered,
            "new": run_plan.new,
            "corrupt": samples.corrupt,
            "duplicates": samples.duplicates,
            "missing": samples.missing,
            "embedded": table.count,
            "selected": chosen.selected,
        },
        "selection": {
            "requested": chosen.requested,
            "candidates": chosen.candidates,
            "note": chosen.note,
            "quality": chosen.quality,
            "device": chosen.device,
        },
        "started_at": started_at,
    }


def model_record(model: OnnxModel, trained: TrainedModel | None, providers: set[str]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "onnx_sha256": model.sha256,
        "embedding_dim": model.embedding_dim,
        "input_size": model.input_size,
        "execution_provider": ",".join(sorted(providers)),
        "precision": model.precision,
        "min_cosine_to_fp32": model.min_cosine_to_fp32,
        "onnx_parity_max_abs_diff": model.parity_max_abs_diff,
        "source": "the datapool's",
    }
    if trained is not None:
        record |= {
            "source": "trained by this run" if trained.trained else "untrained or given checkpoint",
            "trained": trained.trained,
            "training_images": trained.images,
            "training_epochs": trained.epochs,
            "training_images_per_second": round(trained.images_per_second, 2),
            "training_device": trained.device,
            "final_loss": trained.final_loss,
        }
    return record
