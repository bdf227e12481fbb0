"""The run's embeddings as one table: id + float32 vector, clean samples only, id order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel

from tasks.embed import ShardEmbeddings
from tasks.inspect import STATUS_OK, SampleTable

EMBEDDINGS_FILE = "embeddings.parquet"


class EmbeddingTable(BaseModel, frozen=True):
    path: str
    count: int
    dim: int


def gather_embeddings(
    samples: SampleTable, shards: list[ShardEmbeddings], dim: int, path: Path, scratch: Path
) -> EmbeddingTable:
    """Join each ok sample to its row in its shard's embeddings and write `path`. Remote
    shards' embeddings are fetched into `scratch`."""
    rows = pq.read_table(samples.path, columns=["id", "status", "shard", "cache_row"]).to_pydict()
    by_shard = {shard.shard_index: shard.load(scratch) for shard in shards}
    ids = [i for i, status in zip(rows["id"], rows["status"], strict=True) if status == STATUS_OK]
    vectors = np.zeros((0, dim), dtype=np.float32)
    if ids:
        vectors = np.stack(
            [
                by_shard[shard][row]
                for status, shard, row in zip(rows["status"], rows["shard"], rows["cache_row"], strict=True)
                if status == STATUS_OK
            ]
        )
    return write_embedding_table(ids, vectors, path)


def write_embedding_table(ids: list[str], vectors: np.ndarray, path: Path) -> EmbeddingTable:
    """Shape: ids (N,), vectors (N, D)"""
    dim = vectors.shape[1]
    flat = pa.array(vectors.astype(np.float32, copy=False).reshape(-1), pa.float32())
    table = pa.table(
        {"id": pa.array(ids, pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return EmbeddingTable(path=str(path), count=len(ids), dim=dim)


def read_embeddings(table: EmbeddingTable) -> tuple[list[str], np.ndarray]:
    """Shape: -> ids (N,), float32 (N, D)"""
    data = pq.read_table(table.path)
    values = data["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return data["id"].to_pylist(), values.reshape(data.num_rows, table.dim).astype(np.float32)


@task(name="collect-embeddings")
def collect_embeddings(
    samples: SampleTable, shards: list[ShardEmbeddings], dim: int, work_dir: Path, scratch: Path
) -> EmbeddingTable:
    return gather_embeddings(samples, shards, dim, work_dir / EMBEDDINGS_FILE, scratch)
