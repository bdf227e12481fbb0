"""End to end: JPEG files on disk to embeddings, winnow's pipeline against a naive one.

    python -m benchmarks.embed_e2e [--images 512] [--input-size 64] [--rounds 3] [--device cpu|cuda]
                                   [--jpeg-decoder pillow|nvimgcodec]

Writes --images 640x480 JPEGs (about 0.3 megapixels: crops of scikit-image's photographs),
then, on the same files and the same model weights, times
- winnow: the inspect stage's own code (parallel decode in draft mode, hashing, metadata,
  the uint8 cache at model resolution; `--jpeg-decoder nvimgcodec` decodes the JPEGs with
  nvImageCodec, on the GPU), then ONNX Runtime embedding of that cache with the
  model winnow embeds with on the device: int8 on the CPU, fp16 through the CUDA (or
  TensorRT) provider with `--device cuda`;
- naive: per image a full Pillow decode and resize, then PyTorch eager in fp32 on the same
  device, batch by batch, as a first script would.
With `--device cuda` the GPU's utilisation and memory are sampled through NVML during
winnow's rounds (`gpu` in the JSON); without a GPU that PyTorch and ONNX Runtime can both
use it stops at once, in one line naming why.
Rounds are interleaved (the machine is shared) and each winnow round starts from an empty
cache, so every image is decoded every round. Building the device's model (export, then int8
or fp16, once per run in the flow) is reported but not counted. Prints a JSON object
of figures on its last line; `ratio` is winnow's images/s over the naive pipeline's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage import data

from benchmarks.embed import cuda_device_name
from models.embedder import Embedder, ModelConfig
from models.export import export_onnx
from models.fp16 import convert_fp16
from models.quantize import quantize_int8
from tasks.config import ChecksConfig, EmbeddingConfig, VideoConfig
from tasks.ingest.listing import list_samples
from tasks.media.inspection import inspect_shard_into
from tasks.model_runtime.sessions import open_session
from tasks.model_runtime.telemetry import merged_summary, sampling
from tasks.records.samples import ShardInspection
from tasks.records.shards import write_manifests
from tasks.storage.local import LocalStorage
from tasks.storage.shard_store import ShardStore

SCENES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")
WIDTH, HEIGHT = 640, 480


def write_photos(root: Path, count: int, seed: int = 0) -> None:
    """`count` 640x480 JPEGs: each a photograph scaled to cover the frame at a random zoom,
    cropped at a random place, so no two files are alike."""
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in SCENES]
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        zoom = max(WIDTH / photo.width, HEIGHT / photo.height) * rng.uniform(1.0, 1.6)
        scaled = photo.resize((int(photo.width * zoom) + 1, int(photo.height * zoom) + 1))
        left = int(rng.integers(0, scaled.width - WIDTH + 1))
        top = int(rng.integers(0, scaled.height - HEIGHT + 1))
        scaled.crop((left, top, left + WIDTH, top + HEIGHT)).save(root / f"{index:06d}.jpg", quality=90)


def inspect_all(
    storage: LocalStorage, shard_size: int, input_size: int, cache: Path, checks: ChecksConfig
) -> list[ShardInspection]:
    """The inspect stage over every file of `storage`, shard after shard, as the flow runs it."""
    store = ShardStore(root=str(cache))
    shards = write_manifests(list_samples(storage, None), shard_size, store)
    video = VideoConfig()
    return [
        inspect_shard_into(shard, storage, input_size, checks, video, store, f"inspect/{shard.index}")
        for shard in shards
    ]


def naive_embeddings(
    model: Embedder, paths: list[Path], input_size: int, batch_size: int, device: torch.device
) -> np.ndarray:
    """A full decode and a resize per image, then PyTorch eager on `device`, batch by batch."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[start : start + batch_size]]
            side = (input_size, input_size)
            batch = np.stack([np.asarray(i.resize(side, Image.Resampling.BILINEAR)) for i in images])
            out.append(model(torch.from_numpy(batch).to(device)).cpu().numpy())
    return np.concatenate(out)


def device_model(fp32_path: Path, work: Path, images: np.ndarray, device: str) -> tuple[Path, float]:
    """The model winnow embeds with on `device`, and its smallest cosine to fp32 on `images`."""
    if device == "cuda":
        path = work / "model.fp16.onnx"
        return path, convert_fp16(fp32_path, path, images)
    path = work / "model.int8.onnx"
    return path, quantize_int8(fp32_path, path, images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=256, help="files per inspect shard")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--jpeg-decoder", default="pillow", choices=["pillow", "nvimgcodec"])
    args = parser.parse_args()
    checks = ChecksConfig(jpeg_decoder=args.jpeg_decoder)
    if args.device == "cuda":
        cuda_device_name("benchmarks.embed_e2e")  # stops here, naming why, without a usable GPU
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    size = args.input_size
    device = torch.device(args.device)
    model = Embedder(ModelConfig(backbone=args.backbone, input_size=size)).eval()
    embedding = EmbeddingConfig(batch_size=args.batch_size, device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        root, work = Path(folder) / "photos", Path(folder) / "work"
        write_photos(root, args.images)
        storage = LocalStorage(root)
        paths = sorted(root.glob("*.jpg"))

        started = time.perf_counter()
        fp32_path = work / "model.onnx"
        export_onnx(model, fp32_path, {"code_version": "benchmark"})
        calibration = np.concatenate(
            [
                i.open_images(work)
                for i in inspect_all(storage, args.shard_size, size, work / "calibration", checks)
            ]
        )
        model_path, min_cosine = device_model(
            fp32_path, work, calibration[:: max(1, len(calibration) // 256)], args.device
        )
        session = open_session(str(model_path), embedding)
        model_seconds = time.perf_counter() - started
        model.to(device)

        # Warm-up of both sides on a few files: allocations, kernel selection, page cache.
        naive_embeddings(model, paths[: args.batch_size], size, args.batch_size, device)
        session.embed(calibration[: args.batch_size])
        gpu_samples: list[dict[str, Any]] = []

        speeds: dict[str, list[float]] = {"winnow": [], "naive": [], "decode": [], "embed": []}
        for round_index in range(args.rounds):
            # Alternate which side goes first, so that neither always runs second.
            for side in ("winnow", "naive") if round_index % 2 == 0 else ("naive", "winnow"):
                if side == "naive":
                    started = time.perf_counter()
                    naive = naive_embeddings(model, paths, size, args.batch_size, device)
                    speeds["naive"].append(len(naive) / (time.perf_counter() - started))
                    continue
                with sampling() if args.device == "cuda" else nullcontext() as sampler:
                    started = time.perf_counter()
                    inspections = inspect_all(
                        storage, args.shard_size, size, work / f"round-{round_index}", checks
                    )
                    decoded = time.perf_counter()
                    ours = np.concatenate([session.embed(i.open_images(work)) for i in inspections])
                    finished = time.perf_counter()
                if sampler is not None and (summary := sampler.summary()) is not None:
                    gpu_samples.append(summary)
                speeds["winnow"].append(len(ours) / (finished - started))
                speeds["decode"].append(len(ours) / (decoded - started))
                speeds["embed"].append(len(ours) / (finished - decoded))
        agreement = float(np.min(np.sum(ours * naive, axis=1)))
    medians = {name: float(np.median(values)) for name, values in speeds.items()}
    precision = "fp16" if args.device == "cuda" else "int8"
    gpu = merged_summary(gpu_samples) if gpu_samples else None
    ratio = medians["winnow"] / medians["naive"]
    print(
        f"{args.images} JPEGs {WIDTH}x{HEIGHT} -> {args.backbone} at {size} px, {threads} cores, "
        f"median of {args.rounds} interleaved rounds: winnow {medians['winnow']:.1f} img/s "
        f"(inspect {medians['decode']:.1f}, {precision} embedding on {args.device} {medians['embed']:.1f}); "
        f"naive {medians['naive']:.1f} img/s; ratio {ratio:.2f}. Model export + {precision} conversion "
        f"{model_seconds:.1f} s (not counted); smallest cosine winnow vs naive {agreement:.4f}"
    )
    if gpu is not None:
        print(f"GPU during winnow's rounds: {json.dumps(gpu)}")
    print(
        json.dumps(
            {
                "winnow_img_per_s": round(medians["winnow"], 1),
                "naive_img_per_s": round(medians["naive"], 1),
                "ratio": round(ratio, 2),
                "winnow_inspect_img_per_s": round(medians["decode"], 1),
                "winnow_embed_img_per_s": round(medians["embed"], 1),
                "model_build_s": round(model_seconds, 1),
                f"{precision}_min_cosine": round(min_cosine, 4),
                "device": args.device,
                "jpeg_decoder": args.jpeg_decoder,
                "gpu": gpu,
                "min_cosine_winnow_vs_naive": round(agreement, 4),
                "images": args.images,
                "image_size": f"{WIDTH}x{HEIGHT}",
                "input_size": size,
                "backbone": args.backbone,
                "threads": threads,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
