"""What selection reads besides the embeddings (the user's value files, query images) and what it picked."""

from __future__ import annotations

from typing import Literal

import pyarrow.parquet as pq
from pydantic import BaseModel


class ValueFile(BaseModel, frozen=True):
    """A checked copy of a user's value file."""

    location: str  # as the configuration names it
    path: str  # the local Parquet copy
    join: Literal["id", "key"]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]


class SelectionInputs(BaseModel, frozen=True):
    """The files selection reads, by where the configuration names them."""

    metadata: ValueFile | None = None
    scores: dict[int, ValueFile] = {}  # strategy index -> its SCORES file
    query_images: dict[int, str] = {}  # strategy index -> .npy uint8 (n, S, S, 3)
    query_embeddings: dict[int, str] = {}  # strategy index -> .npy float32 (n, D)


SELECTION_FILE = "selection.parquet"


class Selection(BaseModel, frozen=True):
    """What selection picked (a Parquet file of ids at `path`), from how many, and how good the picks are."""

    path: str
    requested: int
    selected: int
    candidates: int
    note: str | None
    # Diversity, representativeness, coverage and balance of the picks, and their mean and
    # std over random subsets of the same size.
    quality: dict[str, object]
    device: str  # where the picks were computed: cpu (numpy, kmedoids) or cuda (torch k-center)


def selected_ids(selection: Selection) -> list[str]:
    """The picked ids, in pick order."""
    return list(pq.read_table(selection.path, columns=["id"])["id"].to_pylist())
