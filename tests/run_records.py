"""A run record as a finished run writes it, for the tests of what reads one."""

from __future__ import annotations

from typing import Any

from tasks.records.run import RunRecord


def synthetic_record(
    run_id: str, quality: dict[str, Any], embedded: int, selected: int, status: str = "committed"
) -> RunRecord:
    """A record of a run over two clips that embedded `embedded` frames and selected `selected`."""
    counts = {"discovered": 2, "new": 2, "corrupt": 0, "duplicates": 0, "missing": 0, "embedded": embedded}
    return RunRecord.model_validate(
        {
            "run_id": run_id,
            "status": status,
            "source": "s3://bucket/clips",
            "output": "s3://bucket/out",
            "started_at": "2026-11-24T00:00:00+00:00",
            "counts": counts | {"selected": selected},
            "timings": {"discover": 0.1, "embed": 2.0, "select": 0.1},
            "model": {
                "execution_provider": "CUDAExecutionProvider",
                "precision": "fp32",
                "source": "the datapool's",
                "embedding_dim": 8,
                "onnx_sha256": "ab" * 32,
                "input_size": 32,
                "min_cosine_to_fp32": None,
                "onnx_parity_max_abs_diff": None,
            },
            "datapool": {
                "name": "clips",
                "base_version": 1,
                "commits_version": 2,
                "samples_before": 0,
                "selected_before": 0,
                "model_reused": False,
                "samples_after": embedded,
                "selected_after": selected,
            },
            "selection": {
                "requested": selected,
                "candidates": embedded,
                "note": None,
                "quality": quality,
                "device": "cpu",
            },
            "config": {},
            "cached_tasks": {},
            "overlapped_stages": [],
            "telemetry": {},
        }
    )
