"""Train: SimCLR on the run's uint8 image cache, saved as a self-describing checkpoint."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from models.augment import ViewAugmentation, augment_view
from models.checkpoint import load_checkpoint, save_checkpoint
from models.embedder import Embedder, ModelConfig
from models.heads import SimCLRProjectionHead
from models.loss import NTXentLoss
from tasks.config import TrainingConfig
from tasks.fingerprint import code_version
from tasks.model_runtime.image_cache import ImageCache, unique_image_indices
from tasks.progress import report
from tasks.records.model import CHECKPOINT_FILE, TrainedModel
from tasks.records.samples import SampleTable, ShardInspection

logger = logging.getLogger(__name__)

# The projection head's output size; SimCLR found 128 enough.
PROJECTION_DIM = 128

# Images whose representation (features and pooled pixels) fits the embedding's principal
# components: 4,096 pin down 128 components of a 704-d representation well (ResNet-18's 512
# features and 192 pooled pixels), at one forward pass over them.
PRINCIPAL_COMPONENT_ROWS = 4096


def model_config(training: TrainingConfig) -> ModelConfig:
    """The network shape `training` configures."""
    return ModelConfig(
        backbone=training.backbone,
        width=training.width,
        input_size=training.input_size,
        embedding_dim=training.embedding_dim,
        pixel_grid=training.pixel_grid,
    )


def training_device(requested: str) -> torch.device:
    """The device to train on: CUDA when asked for (or auto) and available, else the CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        logger.warning("training.device is cuda but no CUDA device is usable: training on the CPU")
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def initial_model(training: TrainingConfig) -> Embedder:
    """A seeded fresh network, or the configured checkpoint (which must match the config)."""
    config = model_config(training)
    if training.checkpoint is not None:
        return load_checkpoint(Path(training.checkpoint), expected=config)
    torch.manual_seed(training.seed)
    return Embedder(config)


def train_simclr(
    model: Embedder, cache: ImageCache, indices: np.ndarray, training: TrainingConfig, device: torch.device
) -> tuple[float, float]:
    """Train `model` in place with SimCLR. Returns (images per second, last epoch's loss).

    Batches smaller than two images cannot be contrasted, so the last partial batch of an
    epoch is dropped unless it is the only one.
    """
    size = training.input_size
    batch_size = min(training.batch_size, len(indices))
    if batch_size < 2:
        raise ValueError(f"training needs at least 2 clean images, found {len(indices)}")
    steps_per_epoch = max(1, len(indices) // batch_size)
    total_steps = steps_per_epoch * training.epochs
    features = model.backbone.out_features
    head = SimCLRProjectionHead(features, max(features, 256), PROJECTION_DIM)
    model.to(device).train()
    head.to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    criterion = NTXentLoss(training.temperature)
    parameters = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=training.learning_rate, weight_decay=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    order_rng = np.random.default_rng(training.seed)
    augment_rng = torch.Generator(device=device).manual_seed(training.seed)
    augmentation = ViewAugmentation()
    seen, started, epoch_loss = 0, time.perf_counter(), float("nan")
    for epoch in range(training.epochs):
        order = order_rng.permutation(indices)
        losses = []
        for step in range(steps_per_epoch):
            batch_indices = np.sort(order[step * batch_size : (step + 1) * batch_size])
            images = torch.from_numpy(cache.gather(batch_indices)).to(device, non_blocking=True)
            views = [augment_view(images, size, augmentation, augment_rng) for _ in range(2)]
            if device.type == "cuda":
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                z0, z1 = (head(model.features(v)) for v in views)
                loss = criterion(z0.float(), z1.float())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            losses.append(loss.detach())
            seen += len(batch_indices)
        epoch_loss = float(torch.stack(losses).mean())
        epoch_line = f"epoch {epoch + 1}/{training.epochs}, loss {epoch_loss:.4f}"
        logger.info(epoch_line)
        report("train", epoch + 1, training.epochs, epoch_line)
    elapsed = time.perf_counter() - started
    model.cpu().eval()
    return seen / max(elapsed, 1e-9), epoch_loss


def project_principal_components(
    model: Embedder, cache: ImageCache, indices: np.ndarray, training: TrainingConfig, device: torch.device
) -> None:
    """Fit the model's embedding map to the principal components of the representation.

    The representation (features and pooled pixels) of the run's images (a seeded sample of at
    most PRINCIPAL_COMPONENT_ROWS).
    """
    if len(indices) == 0:  # nothing clean to fit to: the map stays as it is
        return
    rng = np.random.default_rng(training.seed)
    if len(indices) > PRINCIPAL_COMPONENT_ROWS:
        indices = rng.choice(indices, PRINCIPAL_COMPONENT_ROWS, replace=False)
    indices = np.sort(indices)
    model.to(device).eval()
    batches: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for batch in np.array_split(indices, max(1, -(-len(indices) // training.batch_size))):
            images = model.to_unit_range(torch.from_numpy(cache.gather(batch)).to(device))
            batches.append([block.float().cpu() for block in model.blocks(images)])
    model.cpu()
    model.fit_principal_components([torch.cat(block) for block in zip(*batches, strict=True)])


def train_or_load(
    inspections: list[ShardInspection],
    samples: SampleTable,
    training: TrainingConfig,
    directory: Path,
    scratch: Path,
) -> TrainedModel:
    """Train (or, with training off, take the configured or a seeded model) and save it in `directory`.

    Remote shards' images are fetched into `scratch`.
    """
    checkpoint = directory / CHECKPOINT_FILE
    model = initial_model(training)
    device = training_device(training.device)
    images, speed, loss = 0, 0.0, None
    if training.enabled or training.checkpoint is None:
        cache = ImageCache(inspections, scratch)
        indices = unique_image_indices(cache, samples.path)
        if training.enabled:
            images = len(indices)
            speed, loss = train_simclr(model, cache, indices, training, device)
        else:
            logger.warning(
                "training is off: embedding with the principal components of an untrained network's "
                "features (seed %d)",
                training.seed,
            )
        project_principal_components(model, cache, indices, training, device)
    else:
        logger.warning("training is off: embedding with %s", training.checkpoint)
    save_checkpoint(
        checkpoint,
        model,
        {"training_config": training.model_dump(), "code_version": code_version(), "final_loss": loss},
    )
    return TrainedModel(
        checkpoint=str(checkpoint),
        trained=training.enabled,
        images=images,
        epochs=training.epochs if training.enabled else 0,
        images_per_second=speed,
        final_loss=loss,
        device=device.type,
    )
