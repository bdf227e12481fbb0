"""Sequence selection: windows of consecutive frames as the unit of selection.

The Lightly Worker's `selected_sequence_length` does the same.

A candidate is a window of `length` consecutive sampled clean frames of one video (windows
do not overlap; a video's last frames that do not fill a window are left out). Its
embedding is the mean of its frames' embeddings, normalised again, so greedy k-center over
windows picks sequences that differ as wholes.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def frame_windows(ids: list[str], videos: dict[str, tuple[str, int]], length: int) -> np.ndarray:
    """Rows of `ids` grouped into windows.

    `videos` maps a frame's id to (its video key, its frame index); ids not in it (images) are
    in no window.
    Shape: -> (W, length) int64, each row in frame order, windows in (video key, index) order
    """
    rows_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, sample_id in enumerate(ids):
        if sample_id in videos:
            key, index = videos[sample_id]
            rows_of[key].append((index, row))
    windows = []
    for key in sorted(rows_of):
        rows = [row for _, row in sorted(rows_of[key])]
        windows += [rows[start : start + length] for start in range(0, len(rows) - length + 1, length)]
    return np.array(windows, dtype=np.int64).reshape(-1, length)


def window_embeddings(embeddings: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The unit-length mean embedding of each window.

    Shape: (N, D), (W, k) -> (W, D) float32
    """
    means = embeddings[windows].mean(axis=1)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.maximum(norms, 1e-12)).astype(np.float32)
