"""Train: SimCLR on the run's uint8 image cache, saved as a self-describing checkpoint."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
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

# Training's time budget when training.budget_minutes is not set. ResNet-18 (width 64, 64 px)
# trains about 85 images/s on 2 CPU cores: 10 minutes are 20 epochs of 2,500 images, or 5
# of 10,000, so a first run on the CPU never waits on training for long.
DEFAULT_BUDGET_MINUTES = {"cpu": 10.0, "cuda": 120.0}

# Within an epoch, progress is reported at most this often.
REPORT_SECONDS = 5.0


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


def budget_seconds(training: TrainingConfig, device: torch.device) -> float:
    """How long training may run: training.budget_minutes, or the device's default."""
    minutes = training.budget_minutes
    return 60.0 * (minutes if minutes is not None else DEFAULT_BUDGET_MINUTES[device.type])


def time_left(seconds: float) -> str:
    """'about 40 s left', 'about 3 min left'."""
    return f"about {seconds:.0f} s left" if seconds < 90 else f"about {seconds / 60:.0f} min left"


@dataclass(frozen=True)
class TrainingOutcome:
    """How a training went: its speed, last loss, epochs run (the last maybe cut short) and why it ended."""

    images_per_second: float
    final_loss: float
    epochs: int
    budget_reached: bool


def train_simclr(
    model: Embedder, cache: ImageCache, indices: np.ndarray, training: TrainingConfig, device: torch.device
) -> TrainingOutcome:
    """Train `model` in place with SimCLR, for training.epochs or until its time budget is spent.

    The learning rate follows a cosine from its start to zero over whichever ends first, the
    epochs or the budget, so a training the budget cuts short still ends annealed. At least
    one step runs. Batches smaller than two images cannot be contrasted, so the last partial
    batch of an epoch is dropped unless it is the only one.
    """
    size = training.input_size
    batch_size = min(training.batch_size, len(indices))
    if batch_size < 2:
        raise ValueError(f"training needs at least 2 clean images, found {len(indices)}")
    steps_per_epoch = max(1, len(indices) // batch_size)
    total_steps = steps_per_epoch * training.epochs
    budget = budget_seconds(training, device)
    features = model.backbone.out_features
    head = SimCLRProjectionHead(features, max(features, 256), PROJECTION_DIM)
    model.to(device).train()
    head.to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    criterion = NTXentLoss(training.temperature)
    parameters = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=training.learning_rate, weight_decay=1e-6)
    started = time.perf_counter()

    def progress(step: int) -> float:
        """Where training is, 0 to 1: of its steps, or of its budget once the pace so far would overrun it.

        On pace to end within the budget, the schedule follows the steps alone, so the same
        configuration trains the same model whatever the clock says.
        """
        elapsed = time.perf_counter() - started
        if step == 0 or elapsed * total_steps / step <= budget:
            return step / total_steps
        return min(1.0, max(step / total_steps, elapsed / budget))

    def eta(step: int) -> str:
        """The time training has left: the rest of its steps at the pace so far, within the budget."""
        elapsed = time.perf_counter() - started
        return time_left(max(0.0, min(budget - elapsed, (total_steps - step) * elapsed / max(step, 1))))

    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * progress(step)))
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    order_rng = np.random.default_rng(training.seed)
    augment_rng = torch.Generator(device=device).manual_seed(training.seed)
    augmentation = ViewAugmentation()
    seen = steps = epochs = 0
    epoch_loss, reported = float("nan"), started
    out_of_time = False
    for epoch in range(training.epochs):
        order = order_rng.permutation(indices)
        losses = []
        for step in range(steps_per_epoch):
            out_of_time = steps > 0 and time.perf_counter() - started >= budget
            if out_of_time:
                break
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
            steps += 1
            if time.perf_counter() - reported >= REPORT_SECONDS:
                reported = time.perf_counter()
                report("train", steps, total_steps, f"epoch {epoch + 1}/{training.epochs}, {eta(steps)}")
        if losses:  # none when the budget ran out as the epoch began
            epochs, epoch_loss = epoch + 1, float(torch.stack(losses).mean())
        if out_of_time:
            break
        line = f"epoch {epochs}/{training.epochs}, loss {epoch_loss:.4f}"
        if steps < total_steps:
            line += f", {eta(steps)}"
        logger.info("%s", line)
        report("train", steps, total_steps, line)
    elapsed = time.perf_counter() - started
    if out_of_time:
        line = f"epoch {epochs}/{training.epochs}, loss {epoch_loss:.4f}, stopped at the time budget"
        logger.info("%s", line)
        report("train", steps, total_steps, line)
        logger.warning(
            "training stopped at its time budget of %s after %d of %d epochs (training.budget_minutes)",
            f"{budget / 60:g} min",
            epochs,
            training.epochs,
        )
    model.cpu().eval()
    return TrainingOutcome(seen / max(elapsed, 1e-9), epoch_loss, epochs, out_of_time)


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
    images, outcome = 0, None
    if training.enabled or training.checkpoint is None:
        cache = ImageCache(inspections, scratch)
        indices = unique_image_indices(cache, samples.path)
        if training.enabled:
            sample = training_sample(indices, training)
            images = len(sample)
            outcome = train_simclr(model, cache, sample, training, device)
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
        {
            "training_config": training.model_dump(),
            "code_version": code_version(),
            "final_loss": outcome.final_loss if outcome else None,
        },
    )
    return TrainedModel(
        checkpoint=str(checkpoint),
        trained=training.enabled,
        images=images,
        epochs=outcome.epochs if outcome else 0,
        images_per_second=outcome.images_per_second if outcome else 0.0,
        final_loss=outcome.final_loss if outcome else None,
        device=device.type,
        budget_reached=outcome.budget_reached if outcome else False,
    )


def training_sample(indices: np.ndarray, training: TrainingConfig) -> np.ndarray:
    """The images to train on: all of `indices`, or a seeded sample of training.max_images, in order."""
    if len(indices) <= training.max_images:
        return indices
    logger.info("training on a sample of %d of the %d clean images", training.max_images, len(indices))
    rng = np.random.default_rng(training.seed)
    return np.sort(rng.choice(indices, training.max_images, replace=False))
