"""The run report's plots, as PNG bytes to embed in the page.

Figures are built with matplotlib's object API (`Figure`, no pyplot): pyplot keeps global
state that is not thread-safe, and Prefect runs tasks in threads. PNG, not SVG: a scatter
of 20,000 points is a few hundred kB of PNG but megabytes of SVG.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from tasks.report.data import NeighbourDistances, VideoTimeline

DPI = 110

SELECTED_COLOUR, POOL_COLOUR, RANDOM_COLOUR = "#d62728", "#7f7f7f", "#1f77b4"


def png(figure: Figure) -> bytes:
    """`figure` as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def neighbour_histogram(distances: NeighbourDistances) -> bytes:
    """Distance to the nearest other sample: in the pool, the selection, a random subset."""
    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.add_subplot()
    series = [
        (distances.pool, POOL_COLOUR, f"all samples (n={len(distances.pool):,})"),
        (distances.random, RANDOM_COLOUR, f"random subset (n={len(distances.random):,})"),
        (distances.selected, SELECTED_COLOUR, f"selected (n={len(distances.selected):,})"),
    ]
    finite = [values[np.isfinite(values)] for values, _, _ in series]
    top = max((float(v.max()) for v in finite if len(v)), default=1.0)
    bins = np.linspace(0.0, top * 1.02 or 1.0, 40).tolist()
    for values, (_, colour, label) in zip(finite, series, strict=True):
        if len(values):
            axes.hist(
                values, bins=bins, density=True, histtype="step", linewidth=1.8, color=colour, label=label
            )
    axes.set_xlabel("Euclidean distance to the nearest other sample of the same set (unit embeddings)")
    axes.set_ylabel("density")
    axes.legend(frameon=False, fontsize=8)
    return png(figure)


def embedding_scatter(coordinates: np.ndarray, selected: np.ndarray, method: str) -> bytes:
    """The 2-D map, every plotted sample in grey and the selected ones on top in red.

    Shape: coordinates (N, 2), selected (N,) bool
    """
    figure = Figure(figsize=(6.5, 5.0))
    axes = figure.add_subplot()
    rest = ~selected
    axes.scatter(
        coordinates[rest, 0],
        coordinates[rest, 1],
        s=3,
        c=POOL_COLOUR,
        alpha=0.4,
        linewidths=0,
        label=f"not selected (n={int(rest.sum()):,})",
    )
    axes.scatter(
        coordinates[selected, 0],
        coordinates[selected, 1],
        s=12,
        c=SELECTED_COLOUR,
        linewidths=0,
        label=f"selected (n={int(selected.sum()):,})",
    )
    axes.set_xlabel(f"{method} 1")
    axes.set_ylabel(f"{method} 2")
    axes.legend(frameon=False, fontsize=8, markerscale=2)
    return png(figure)


def metadata_histograms(everything: dict[str, np.ndarray], selected: dict[str, np.ndarray]) -> bytes:
    """One panel a metadata column: its distribution over all clean samples and the selected ones.

    Densities, so the two sizes compare. Sharpness on a log scale: it spans decades (blurred
    images score 4-16, photographs hundreds).
    """
    figure = Figure(figsize=(10.0, 2.9))
    panels = figure.subplots(1, len(everything))
    for axes, name in zip(np.atleast_1d(panels), everything, strict=True):
        values, chosen = everything[name], selected[name]
        values, chosen = values[np.isfinite(values)], chosen[np.isfinite(chosen)]
        logarithmic = name == "sharpness"
        if logarithmic:
            values, chosen = np.log10(1.0 + values), np.log10(1.0 + chosen)
        if len(values):
            bins = np.histogram_bin_edges(values, bins=30).tolist()
            axes.hist(values, bins=bins, density=True, color=POOL_COLOUR, alpha=0.6, label="all")
            if len(chosen):
                axes.hist(
                    chosen,
                    bins=bins,
                    density=True,
                    histtype="step",
                    linewidth=1.8,
                    color=SELECTED_COLOUR,
                    label="selected",
                )
        axes.set_xlabel("log10(1 + sharpness)" if logarithmic else name)
        axes.set_yticks([])
        axes.legend(frameon=False, fontsize=8)
    return png(figure)


def video_timeline_plot(timelines: list[VideoTimeline]) -> bytes:
    """A row a video: every clean frame as a grey tick, the selected ones in red."""
    figure = Figure(figsize=(10.0, 0.45 * len(timelines) + 0.9))
    axes = figure.add_subplot()
    for row, timeline in enumerate(timelines):
        for seconds, size, colour, width in (
            (timeline.timestamps, 60, POOL_COLOUR, 0.8),
            (timeline.selected, 140, SELECTED_COLOUR, 2.2),
        ):
            axes.scatter(seconds, np.full(len(seconds), row), marker="|", s=size, c=colour, linewidths=width)
    axes.set_yticks(range(len(timelines)), [t.video for t in timelines], fontsize=8)
    axes.set_ylim(len(timelines) - 0.5, -0.5)
    axes.set_xlabel("seconds into the video (grey: a clean frame, red: selected)")
    return png(figure)
