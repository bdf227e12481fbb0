"""SimCLR training throughput at 64 and 128 px: winnow's own training loop on a uint8 cache.

    python -m benchmarks.train [--sizes 64,128] [--images 512] [--epochs 2]

Times tasks/model_runtime/training.py's loop (batched augmentation on the training device, AMP and
channels_last on CUDA) over a cache of photo crops, as the train stage reads it. Prints a
JSON object of figures on its last line (`img_per_s_<size>`, both views of an image
counted once, as run.json's `training_images_per_second` counts them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from models.embedder import Embedder
from tasks.config import TrainingConfig
from tasks.model_runtime.image_cache import ImageCache
from tasks.model_runtime.training import model_config, train_simclr, training_device
from tasks.records.samples import IMAGES_FILE, ShardInspection
from tasks.records.shards import Shard
from tasks.storage.shard_store import ShardStore


def photo_cache(store: ShardStore, folder: str, count: int, size: int) -> ShardInspection:
    """A one-shard uint8 cache of `count` random crops of a photograph, at `size` px."""
    photo = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(0)
    directory = Path(store.root, folder)
    directory.mkdir(parents=True)
    with (directory / IMAGES_FILE).open("wb") as cache:
        for _ in range(count):
            side = int(rng.integers(128, 512))
            left, top = (int(v) for v in rng.integers(0, 512 - side + 1, 2))
            crop = photo.crop((left, top, left + side, top + side)).resize((size, size))
            cache.write(np.asarray(crop, dtype=np.uint8).tobytes())
    shard = Shard(index=0, fingerprint="benchmark", manifest="", count=count)
    return ShardInspection(shard=shard, store=store, folder=folder, ok=count, corrupt=0, input_size=size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    device = training_device(args.device)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in (int(s) for s in args.sizes.split(",")):
            training = TrainingConfig(input_size=size, epochs=args.epochs, batch_size=args.batch_size)
            inspection = photo_cache(ShardStore(root=folder), str(size), args.images, size)
            model = Embedder(model_config(training))
            cache = ImageCache([inspection], Path(folder))
            outcome = train_simclr(model, cache, np.arange(args.images), training, device)
            speed = outcome.images_per_second
            figures[f"img_per_s_{size}"] = round(speed, 1)
            print(
                f"{size} px: {speed:.1f} images/s ({outcome.epochs} epochs of {args.images}, "
                f"loss {outcome.final_loss:.3f})"
            )
    print(
        json.dumps(
            {
                **figures,
                "device": device.type,
                "images": args.images,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "backbone": TrainingConfig().backbone,
            }
        )
    )


if __name__ == "__main__":
    main()
