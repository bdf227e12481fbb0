"""ONNX Runtime against PyTorch eager: the same model, batch and input, in one run.

    python -m benchmarks.embed [--input-size 64] [--batch-sizes 1,8,64] [--images 640]

Both sides get uint8 NHWC batches and return L2-normalised embeddings (winnow's exported
graph); both use every core. ONNX Runtime runs the fp32 graph and the int8 graph winnow
embeds with on the CPU (`embedding.precision: auto`). Prints a JSON object of figures on
its last line; `ratio` is winnow's CPU default (int8) over PyTorch eager.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models import Embedder, ModelConfig
from models.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from models.quantize import quantize_int8
from tasks.config import EmbeddingConfig
from tasks.onnx_session import open_session


def images_per_second(
    runners: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray, batches: int, rounds: int = 3
) -> dict[str, float]:
    """Median images/s of each runner over `rounds`, the runners interleaved in each round
    so that a slow spell of a shared machine does not fall on one side only."""
    for run_batch in runners.values():
        for _ in range(3):  # warm-up: allocations, kernel selection
            run_batch(batch)
    speeds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run_batch in runners.items():
            started = time.perf_counter()
            for _ in range(batches):
                run_batch(batch)
            speeds[name].append(batches * len(batch) / (time.perf_counter() - started))
    return {name: float(np.median(values)) for name, values in speeds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8,64", help="comma-separated; the last is the headline")
    parser.add_argument("--images", type=int, default=640, help="timed images per batch size, side and round")
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = ModelConfig(backbone=args.backbone, input_size=args.input_size)
    model = Embedder(config).eval()
    rng = np.random.default_rng(0)
    size = args.input_size
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        fp32_path, int8_path = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        export_onnx(model, fp32_path, {"code_version": "benchmark"})
        calibration = rng.integers(0, 256, (128, size, size, 3), dtype=np.uint8)
        int8_agreement = quantize_int8(fp32_path, int8_path, calibration)
        for batch_size in batch_sizes:
            embedding = EmbeddingConfig(batch_size=batch_size, device="cpu")
            fp32_session = open_session(str(fp32_path), embedding)
            int8_session = open_session(str(int8_path), embedding)
            batch = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
            batches = max(1, args.images // batch_size)
            with torch.inference_mode():
                speeds = images_per_second(
                    {
                        "int8": lambda b, s=int8_session.session: s.run([OUTPUT_NAME], {INPUT_NAME: b}),
                        "fp32": lambda b, s=fp32_session.session: s.run([OUTPUT_NAME], {INPUT_NAME: b}),
                        "torch": lambda b: model(torch.from_numpy(b)),
                    },
                    batch,
                    batches,
                )
            int8_speed, fp32_speed, torch_speed = speeds["int8"], speeds["fp32"], speeds["torch"]
            figures[str(batch_size)] = {
                "ort_img_per_s": round(int8_speed, 1),
                "ort_fp32_img_per_s": round(fp32_speed, 1),
                "torch_img_per_s": round(torch_speed, 1),
                "ratio": round(int8_speed / torch_speed, 2),
                "fp32_ratio": round(fp32_speed / torch_speed, 2),
            }
            print(
                f"batch {batch_size:4d}: ONNX Runtime int8 {int8_speed:7.1f} img/s, fp32 {fp32_speed:7.1f}; "
                f"PyTorch eager {torch_speed:7.1f} img/s; ratio int8 {int8_speed / torch_speed:.2f}, "
                f"fp32 {fp32_speed / torch_speed:.2f}"
            )
        provider = int8_session.provider
        # winnow's own loop over a ragged count (fixed shape, padded last batch).
        many = rng.integers(0, 256, (args.images - 7, size, size, 3), dtype=np.uint8)
        started = time.perf_counter()
        int8_session.embed(many)
        pipeline_speed = len(many) / (time.perf_counter() - started)
    print(
        f"{config}, {threads} threads, provider {provider}; int8 smallest cosine to fp32 "
        f"{int8_agreement:.4f}; winnow's loop (int8) {pipeline_speed:.1f} img/s"
    )
    headline = figures[str(batch_sizes[-1])]
    print(
        json.dumps(
            {
                **headline,
                "batch_size": batch_sizes[-1],
                "by_batch_size": figures,
                "ort_pipeline_img_per_s": round(pipeline_speed, 1),
                "int8_min_cosine": round(int8_agreement, 4),
                "input_size": size,
                "backbone": args.backbone,
                "provider": provider,
                "threads": threads,
            }
        )
    )


if __name__ == "__main__":
    main()
