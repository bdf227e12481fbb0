"""The picks as a gallery of thumbnails, for a markdown artifact in the Prefect UI.

The thumbnails come from the run's uint8 image cache at model resolution (never a
re-decode) as inline JPEG data URIs, so the gallery shows without access to the output.
It is bounded twice: by a count (report.gallery) and by bytes, so a run with large model
inputs still gives the UI an artifact of a few hundred KB.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import pyarrow.parquet as pq

from tasks.records.samples import SampleTable
from tasks.records.selection import Selection
from tasks.report.build import ImageReader, thumbnails
from tasks.report.html import Thumbnail, data_uri

# Past this, the artifact would slow the UI's page down: the gallery stops there.
MAX_GALLERY_BYTES = 512 * 1024
# Shown this wide, whatever the model's input size.
THUMBNAIL_PIXELS = 96


def figure(thumbnail: Thumbnail) -> str:
    """One pick: its image (or a note that it is not cached) with its id as text and tooltip."""
    name = html.escape(thumbnail.sample_id)
    caption = html.escape(thumbnail.caption)
    if thumbnail.jpeg is None:
        return f"<span>{caption}: {name} (not in this run's cache)</span>"
    source = data_uri("image/jpeg", thumbnail.jpeg)
    return (
        f'<img src="{source}" width="{THUMBNAIL_PIXELS}" height="{THUMBNAIL_PIXELS}" '
        f'alt="{name}" title="{caption}: {name}"/>'
    )


def gallery_markdown(
    samples: SampleTable, selection: Selection, images: Mapping[int, ImageReader], limit: int
) -> str | None:
    """The first `limit` picks as thumbnails (pick order), and a line saying how many are shown.

    None when the run picked nothing.
    """
    picked = pq.read_table(selection.path, columns=["id"])["id"].to_pylist()
    if not picked or limit == 0:
        return None
    rows = pq.read_table(samples.path, columns=["id", "shard", "cache_row"])
    wanted = {sample_id: f"pick {rank}" for rank, sample_id in enumerate(picked[:limit])}
    figures, size = [], 0
    for thumbnail in thumbnails(rows, wanted, images).values():
        shown = figure(thumbnail)
        if size + len(shown) > MAX_GALLERY_BYTES:
            break
        figures.append(shown)
        size += len(shown)
    heading = f"# The picks: {len(figures)} of {len(picked)}"
    note = "In pick order; hover over a thumbnail for its id. All picks: selected_filenames.txt."
    return "\n\n".join([heading, note, " ".join(figures)])
