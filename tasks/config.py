"""The run's configuration: one pydantic model, validated before any work starts.

The flow takes the top-level fields as parameters and each section as a pydantic model, so
the Prefect UI renders a form with these descriptions and defaults; a YAML file and the
CLI's flags fill the same fields.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.backbone import BackboneName

# Used when neither n_samples nor proportion is given (stated in the README).
DEFAULT_PROPORTION = 0.1
DEFAULT_OUTPUT_ROOT = Path("winnow-output")


class Section(BaseModel):
    # A misspelt field is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputsConfig(Section):
    relevant_filenames: str | None = Field(
        None,
        description="File of gitignore-style patterns ('*', '**', '!' negation) that narrows "
        "which files of the source are used; a relative path is read from the source.",
    )
    shard_size: int = Field(
        2000, ge=1, le=100_000, description="Samples per shard: the unit of caching and parallelism."
    )


class ChecksConfig(Section):
    max_image_pixels: int = Field(
        178_956_970,
        ge=1,
        description="Images with more pixels are rejected as decompression bombs "
        "(Pillow's own limit by default).",
    )
    remove_exact_duplicates: bool = Field(
        True, description="Mark files whose content hash equals an earlier file's as duplicates."
    )


class TrainingConfig(Section):
    enabled: bool = Field(
        True,
        description="Train a SimCLR model on the source. Off: use `checkpoint`, or a seeded "
        "untrained network if none is given.",
    )
    checkpoint: str | None = Field(
        None, description="A winnow checkpoint.pt to start training from, or to embed with."
    )
    backbone: BackboneName = Field("resnet18", description="ResNet depth.")
    width: int = Field(64, ge=4, le=256, description="Channels of the first ResNet stage (64 is standard).")
    input_size: int = Field(64, ge=32, le=512, description="Square input side in pixels.")
    embedding_dim: int = Field(128, ge=2, le=4096, description="Embedding dimension.")
    epochs: int = Field(20, ge=1, le=10_000, description="Passes over the clean images.")
    batch_size: int = Field(64, ge=2, le=8192, description="Images per step (two views each).")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="AdamW learning rate (cosine decay).")
    temperature: float = Field(0.5, gt=0, le=10, description="NT-Xent temperature.")
    seed: int = Field(0, description="Seeds initialisation, augmentation and batch order.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train.")


class EmbeddingConfig(Section):
    batch_size: int = Field(
        64, ge=1, le=8192, description="Fixed batch shape; the last batch is padded to it."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime execution provider: CUDA when usable under auto."
    )
    num_threads: int | None = Field(None, ge=1, description="CPU provider threads; default: every core.")
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="auto: int8 on the CPU (about 2x faster; kept only if every calibration "
        "image's embedding stays within cosine 0.99 of fp32), fp32 on a GPU.",
    )


class SelectionConfig(Section):
    min_distance: float | None = Field(
        None,
        ge=0,
        le=2,
        description="Stop early once the farthest remaining sample is closer than this "
        "(Euclidean distance between unit embeddings) to the selection.",
    )
    seed: int = Field(0, description="Seeds the first pick of greedy k-center.")


class RunConfig(Section):
    source: str = Field(..., description="Folder of images to curate.")
    output: str | None = Field(
        None, description="Where runs are written; default winnow-output/<source name>."
    )
    n_samples: int | None = Field(None, ge=1, description="How many samples to select.")
    proportion: float | None = Field(
        None, gt=0, le=1, description=f"Share of the clean samples to select (default {DEFAULT_PROPORTION})."
    )
    cache_dir: str | None = Field(
        None, description="Local folder for decoded images, models and embeddings; default <output>/cache."
    )
    inputs: InputsConfig = InputsConfig()
    checks: ChecksConfig = ChecksConfig()
    training: TrainingConfig = TrainingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    selection: SelectionConfig = SelectionConfig()

    @field_validator("source")
    @classmethod
    def _source_is_a_folder(cls, source: str) -> str:
        if "://" in source:
            raise ValueError(f"{source!r}: only local folders are supported as a source")
        path = Path(source).expanduser()
        if not path.exists():
            raise ValueError(f"source folder {source!r} does not exist")
        if not path.is_dir():
            raise ValueError(f"source {source!r} is not a folder")
        return str(path.resolve())

    @model_validator(mode="after")
    def _one_way_to_say_how_many(self) -> RunConfig:
        if self.n_samples is not None and self.proportion is not None:
            raise ValueError("give n_samples or proportion, not both")
        return self

    @property
    def output_dir(self) -> Path:
        if self.output is not None:
            return Path(self.output).expanduser().resolve()
        return (DEFAULT_OUTPUT_ROOT / Path(self.source).name).resolve()

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser().resolve() if self.cache_dir else self.output_dir / "cache"

    def target_count(self, clean: int) -> int:
        """How many samples to select out of `clean` candidates (before capping at `clean`)."""
        if self.n_samples is not None:
            return self.n_samples
        proportion = self.proportion if self.proportion is not None else DEFAULT_PROPORTION
        return max(1, math.ceil(proportion * clean))


def describe_validation_error(error: ValidationError) -> str:
    """One line a field: 'training.epochs: Input should be greater than or equal to 1'."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "config"
        lines.append(f"{field}: {problem['msg']}")
    return "invalid configuration: " + "; ".join(lines)
