"""The run report as one self-contained HTML page.

Inline CSS, plots and thumbnails as data URIs, no script and no network, so it opens the
same in any browser, offline, from an S3 download, and prints to the PDF unchanged.

Every string from the run (ids, paths, reasons) is escaped: a key named `<script>` is
shown, never run.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
from PIL import Image

from tasks.report.data import quality_rows

THUMBNAIL_QUALITY = 85

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.92em; word-break: break-all; }
.note { color: #666; font-size: 0.9em; }
.plot { max-width: 100%; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 104px; font-size: 10px; color: #555; word-break: break-all; }
figure img { width: 96px; height: 96px; border: 1px solid #ddd; }
.pair { display: flex; gap: 4px; align-items: flex-start; margin: 0 16px 8px 0; }
@page { size: A4; margin: 12mm; }
@media print { body { margin: 0; max-width: none; } section { break-inside: avoid-page; } }
"""


def data_uri(mime: str, data: bytes) -> str:
    """`data` as a base64 data URI of type `mime`."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def jpeg(pixels: np.ndarray) -> bytes:
    """A thumbnail from the uint8 cache, at the model's resolution, as JPEG bytes.

    Shape: (S, S, 3) uint8
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


@dataclass(frozen=True)
class Thumbnail:
    """A sample's thumbnail in a gallery: its id, its JPEG (when cached) and its caption."""

    sample_id: str
    jpeg: bytes | None  # None: its pixels are not in this run's cache (an earlier run's sample)
    caption: str = ""


@dataclass(frozen=True)
class DuplicatePair:
    """A removed duplicate's thumbnail and that of the sample it duplicates, which was kept."""

    removed: Thumbnail
    kept: Thumbnail


@dataclass(frozen=True)
class ReportContent:
    """Everything the page shows; `numbers` is report.json."""

    numbers: dict[str, Any]
    plots: dict[str, bytes]  # name -> PNG
    selected: list[Thumbnail]
    duplicates: list[DuplicatePair]
    atypical: list[Thumbnail]
    notes: dict[str, str] = field(default_factory=dict)  # section -> what was subsampled or left out


def table(rows: Iterable[tuple[str, object]], header: tuple[str, ...] = ()) -> str:
    """An HTML table of (name, value) rows, a value tuple giving several cells, under `header`."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr><th>{escape(name)}</th>{cells(value)}</tr>" for name, value in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def cells(value: object) -> str:
    """The table cells of a value (one a tuple item), numbers right-aligned."""
    values = value if isinstance(value, tuple) else (value,)
    return "".join(
        f'<td class="n">{formatted(v)}</td>' if isinstance(v, int | float) else f"<td>{formatted(v)}</td>"
        for v in values
    )


def formatted(value: object) -> str:
    """A value as escaped text for a table cell: '-' for None, yes or no for a bool, numbers formatted."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        # Four significant digits below 10 (0.7027, 0.42, 4.8), one decimal above (254.2).
        return f"{value:.4g}" if abs(value) < 10 else f"{value:,.1f}"
    return escape(str(value))


def thumbnail(item: Thumbnail) -> str:
    """A thumbnail as an HTML figure with its id and caption (a note when it has no image)."""
    image = (
        f'<img src="{data_uri("image/jpeg", item.jpeg)}" alt="{escape(item.sample_id)}">'
        if item.jpeg is not None
        else '<div class="note">not in this run</div>'
    )
    caption = escape(item.sample_id) + (f"<br>{escape(item.caption)}" if item.caption else "")
    return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"


def plot(content: ReportContent, name: str, alt: str) -> str:
    """The plot `name` as an HTML image with alternative text `alt`."""
    return f'<img class="plot" src="{data_uri("image/png", content.plots[name])}" alt="{escape(alt)}">'


def section(anchor: str, title: str, body: str, note: str | None = None) -> str:
    """An HTML section with id `anchor`, a `title` heading, `body` and an optional note."""
    aside = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}{aside}</section>'


def run_section(numbers: dict[str, Any]) -> str:
    """The section on the run: source, output, model, throughputs, GPU telemetry, stage times."""
    model, throughput = numbers["model"], numbers["throughput"]
    rows: list[tuple[str, object]] = [
        ("source", numbers["source"]),
        ("output", numbers["output"]),
        ("datapool", numbers["datapool"]["name"]),
        ("started", numbers["started_at"]),
        ("execution provider", model["execution_provider"] or "none (nothing new to embed)"),
        ("embedding precision", model["precision"]),
        ("model", f"{model['source']}, {model['embedding_dim']}-d, ONNX sha256 {model['onnx_sha256'][:12]}"),
        ("training device", model.get("training_device")),
        ("training images / s", model.get("training_images_per_second")),
        ("embedded images / s", throughput["embedded_per_second"]),
    ]
    for stage, gpu in numbers["telemetry"].get("stages", {}).items():
        rows.append(
            (
                f"GPU during {stage}",
                f"{gpu['gpu']}: {gpu['utilisation_mean_pct']}% mean, {gpu['utilisation_max_pct']}% max "
                f"utilisation; {gpu['memory_max_mib']:,} of {gpu['memory_total_mib']:,} MiB at most",
            )
        )
    if numbers["telemetry"].get("note"):
        rows.append(("GPU telemetry", numbers["telemetry"]["note"]))
    stages = table(
        [*numbers["timings"].items(), ("until selected", throughput["seconds_until_selected"])],
        ("stage", "seconds"),
    )
    return section(
        "run",
        "The run",
        table(rows) + stages,
        "Publishing and the datapool commit come after the report; their times are in run.json.",
    )


def counts_section(numbers: dict[str, Any]) -> str:
    """The section on counts: what became of the samples, corrupt reasons, the datapool before and after."""
    counts, pool = numbers["counts"], numbers["datapool"]
    duplicates = numbers["duplicate_kinds"]
    rows = [
        ("discovered", counts["discovered"]),
        ("new or changed", counts["new"]),
        ("corrupt", counts["corrupt"]),
        ("duplicates", counts["duplicates"]),
        *((f"  {kind}s", n) for kind, n in duplicates.items()),
        ("missing (gone while read)", counts["missing"]),
        ("unreadable (tried again next run)", counts.get("unreadable", 0)),
        ("moved (pool samples under a new key)", counts.get("moved", 0)),
        ("embedded", counts["embedded"]),
        ("selected", counts["selected"]),
    ]
    reasons = numbers["corrupt_reasons"]
    corrupt = table(reasons.items(), ("corrupt because", "files")) if reasons else ""
    datapool = table(
        [
            ("version", (pool["base_version"], pool["commits_version"])),
            ("samples", (pool["samples_before"], pool["samples_after"])),
            ("selected", (pool["selected_before"], pool["selected_after"])),
        ],
        ("datapool", "before", "after"),
    )
    note = (
        "Discovered and new count files; embedded and selected count samples: an image, or a "
        "frame sampled from a video."
    )
    return section("counts", "Counts", table(rows) + corrupt + datapool, note)


def quality_section(content: ReportContent) -> str:
    """The section on selection quality: the selection versus random subsets, and the histograms."""
    quality = content.numbers["selection"]["quality"]
    rows = [
        (name, (mine, f"{formatted(mean)} ± {formatted(std)}"))
        for name, mine, mean, std in quality_rows(quality)
    ]
    header = ("", "selected", f"random subsets (mean ± std of {len(quality['random_seeds'])} seeds)")
    body = table(rows, header) + (
        '<p class="note">diversity: mean distance from each pick to its nearest other pick (earlier '
        "runs' picks included), higher is better; mean_distance_to_nearest_pick: mean distance from "
        "every sample to its nearest pick, this run's or an earlier run's, lower is better (it says "
        "how well the picks represent the pool); coverage: 1 / (1 + that mean), higher is better; "
        "balance of a BALANCE key: entropy of the picks' categories over log(categories in the "
        f"pool), higher is better. The random subsets are drawn from the {quality['random_from']} "
        "candidates that passed the thresholds.</p>"
    )
    if "neighbours" in content.plots:
        body += plot(content, "neighbours", "nearest-neighbour distance histograms")
    return section("quality", "Selection quality", body, content.notes.get("quality"))


def gallery(items: list[Thumbnail]) -> str:
    """A grid of thumbnails."""
    return f'<div class="grid">{"".join(thumbnail(item) for item in items)}</div>'


def render_html(content: ReportContent) -> str:
    """The report page: a headline, then every section of `content` that has something to show."""
    numbers = content.numbers
    parts = [
        run_section(numbers),
        counts_section(numbers),
        quality_section(content),
    ]
    for name, title, alt in (
        ("map", "Embedding map", "2-D map of the embeddings"),
        ("metadata", "Metadata: all versus selected", "metadata distributions"),
    ):
        if name in content.plots:
            parts.append(section(name, title, plot(content, name, alt), content.notes.get(name)))
    parts.append(
        section("selected", "Selected samples", gallery(content.selected), content.notes.get("selected"))
    )
    if content.duplicates:
        pairs = "".join(
            f'<div class="pair">{thumbnail(p.removed)}{thumbnail(p.kept)}</div>' for p in content.duplicates
        )
        parts.append(
            section(
                "duplicates",
                "Duplicates beside the sample they duplicate",
                f'<div class="grid">{pairs}</div>',
                content.notes.get("duplicates"),
            )
        )
    if content.atypical:
        parts.append(
            section(
                "atypical", "Most atypical samples", gallery(content.atypical), content.notes.get("atypical")
            )
        )
    if "videos" in content.plots:
        parts.append(
            section(
                "videos",
                "Video timelines",
                plot(content, "videos", "selected frames per video"),
                content.notes.get("videos"),
            )
        )
    selection_note = numbers["selection"]["note"]
    headline = (
        f"<h1>winnow run {escape(numbers['run_id'])}</h1>"
        f"<p>{numbers['counts']['selected']:,} selected of {numbers['counts']['embedded']:,} embedded "
        f"({numbers['counts']['discovered']:,} discovered).</p>"
        + (f'<p class="note">{escape(selection_note)}</p>' if selection_note else "")
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>winnow run {escape(numbers['run_id'])}</title><style>{STYLE}</style></head>"
        f"<body>{headline}{''.join(parts)}</body></html>"
    )
