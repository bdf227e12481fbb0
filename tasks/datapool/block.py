"""The datapool block: winnow's memory of what a source's runs already processed.

Register the type so that it shows in the Prefect UI's block catalog:

    prefect block register -m tasks.datapool.block

The block holds a small state and pointers; the rows (every processed key with its
version, embedding and selected flag) are Parquet segments in the output location: a
commit adds its run's changes as one segment, and compaction merges them.
Each committed version is also written once to `<output>/datapool/<name>/versions/`, an
append-only log that is the arbiter between racing runs (see tasks/datapool/state.py).
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field


class Datapool(Block):
    """What winnow's runs over one source have processed and selected, and the embedding model.

    The model is the one that embedded it. Written by the curate flow after a run has
    published everything.
    """

    _block_type_name = "winnow datapool"
    _block_type_slug = "winnow-datapool"
    _description = (
        "State of a winnow datapool: where its manifest segments are, its version, the model that "
        "produced its embeddings, counts and the last run. Written by the curate flow."
    )

    output: str = Field(..., description="The output location whose datapool/ folder this state lives in.")
    source: str | None = Field(
        None,
        description="The source whose samples and picks the pool holds; a run over another source "
        "is refused. Empty for pools committed before it was recorded.",
    )
    version: int = Field(0, description="Increases by one with every committed run.")
    segments: list[str] = Field(
        default_factory=list,
        description="URIs of the manifest's Parquet segments, oldest first: a base holding every "
        "row (key, version as ETag/mtime, size, embedding, selected), then one a run with its changes.",
    )
    compacted_from: int | None = Field(
        None, description="Set when this version only merged that version's segments into one."
    )
    manifest: str | None = Field(
        None, description="URI of the whole manifest, in pools committed before segments (read as one)."
    )
    model_onnx: str | None = Field(None, description="URI of the ONNX model that produced the embeddings.")
    model_onnx_sha256: str | None = Field(None, description="sha256 of that ONNX file.")
    checkpoint: str | None = Field(None, description="URI of the PyTorch checkpoint the model came from.")
    input_size: int | None = Field(None, description="The model's square input side in pixels.")
    embedding_dim: int | None = Field(None, description="The model's embedding dimension.")
    samples: int = Field(0, description="Samples in the manifest.")
    selected: int = Field(0, description="Samples selected so far.")
    last_run_id: str | None = Field(None, description="The run that committed this version.")
    last_run_at: str | None = Field(None, description="When it committed (UTC, ISO 8601).")
