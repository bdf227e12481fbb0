"""ONNX Runtime against PyTorch eager: the same model, batch and input, in one run.

    python -m benchmarks.embed [--input-size 64] [--batch-sizes 1,8,64] [--images 640]

Both sides get uint8 NHWC batches and return L2-normalised embeddings (winnow's exported
graph); both use every core. Prints a JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models import Embedder, ModelConfig
from models.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from tasks.config import EmbeddingConfig
from tasks.embed import embed_images, open_session


def images_per_second(run_batch, batch: np.ndarray, batches: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run_batch(batch)
    started = time.perf_counter()
    for _ in range(batches):
        run_batch(batch)
    return batches * len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8,64", help="comma-separated; the last is the headline")
    parser.add_argument("--images", type=int, default=640, help="timed images per batch size and side")
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = ModelConfig(backbone=args.backbone, input_size=args.input_size)
    model = Embedder(config).eval()
    rng = np.random.default_rng(0)
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path, {"code_version": "benchmark"})
        for batch_size in batch_sizes:
            session = open_session(str(path), EmbeddingConfig(batch_size=batch_size, device="cpu"))
            batch = rng.integers(0, 256, (batch_size, args.input_size, args.input_size, 3), dtype=np.uint8)
            batches = max(1, args.images // batch_size)
            ort_speed = images_per_second(
                lambda b, s=session: s.run([OUTPUT_NAME], {INPUT_NAME: b}), batch, batches
            )
            with torch.inference_mode():
                torch_speed = images_per_second(lambda b: model(torch.from_numpy(b)), batch, batches)
            figures[str(batch_size)] = {
                "ort_img_per_s": round(ort_speed, 1),
                "torch_img_per_s": round(torch_speed, 1),
                "ratio": round(ort_speed / torch_speed, 2),
            }
            print(
                f"batch {batch_size:4d}: ONNX Runtime {ort_speed:8.1f} img/s, "
                f"PyTorch eager {torch_speed:8.1f} img/s, ratio {ort_speed / torch_speed:.2f}"
            )
        provider = session.get_providers()[0]
        # winnow's own loop over a ragged count (fixed shape, padded last batch).
        many = rng.integers(0, 256, (args.images - 7, args.input_size, args.input_size, 3), dtype=np.uint8)
        started = time.perf_counter()
        embed_images(session, many, batch_sizes[-1])
        pipeline_speed = len(many) / (time.perf_counter() - started)
    print(f"{config}, {threads} threads, provider {provider}; winnow's loop {pipeline_speed:.1f} img/s")
    headline = figures[str(batch_sizes[-1])]
    print(
        json.dumps(
            {
                **headline,
                "batch_size": batch_sizes[-1],
                "by_batch_size": figures,
                "ort_pipeline_img_per_s": round(pipeline_speed, 1),
                "input_size": args.input_size,
                "backbone": args.backbone,
                "provider": provider,
                "threads": threads,
            }
        )
    )


if __name__ == "__main__":
    main()
