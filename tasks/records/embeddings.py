"""Embeddings: a shard's (a .npy in the shard store) and the run's table (id + vector)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from tasks.storage.shard_store import ShardStore

SHARD_EMBEDDINGS_FILE = "embeddings.npy"


class ShardEmbeddings(BaseModel, frozen=True):
    """Embeddings of one shard's ok samples, in cache-row order: `key` in `store`."""

    shard_index: int
    store: ShardStore
    key: str
    count: int
    provider: str
    device: str  # where it was embedded: host and GPU, e.g. node-3/gpu1
    gpu: dict[str, Any] | None  # that GPU, sampled while embedding (tasks/model_runtime/telemetry.py)

    def load(self, scratch: Path) -> np.ndarray:
        """The embeddings, memory-mapped (fetched into `scratch` if remote).

        Shape: (count, D)
        """
        return np.load(self.store.fetch(self.key, scratch), mmap_mode="r")


EMBEDDINGS_FILE = "embeddings.parquet"


class EmbeddingTable(BaseModel, frozen=True):
    """The run's embeddings as a Parquet table (id + vector) at `path`: `count` vectors of `dim`."""

    path: str
    count: int
    dim: int


def write_embedding_table(ids: list[str], vectors: np.ndarray, path: Path) -> EmbeddingTable:
    """Write `ids` and their `vectors` as the embedding table at `path`.

    Shape: ids (N,), vectors (N, D)
    """
    dim = vectors.shape[1]
    flat = pa.array(vectors.astype(np.float32, copy=False).reshape(-1), pa.float32())
    table = pa.table(
        {"id": pa.array(ids, pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return EmbeddingTable(path=str(path), count=len(ids), dim=dim)


def read_embeddings(table: EmbeddingTable) -> tuple[list[str], np.ndarray]:
    """Read an embedding table's ids and vectors.

    Shape: -> ids (N,), float32 (N, D)
    """
    data = pq.read_table(table.path)
    values = data["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return data["id"].to_pylist(), values.reshape(data.num_rows, table.dim).astype(np.float32)
