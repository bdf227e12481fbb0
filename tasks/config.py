"""The run's configuration: one pydantic model, validated before any work starts.

The flow takes the top-level fields as parameters and each section as a pydantic model, so
the Prefect UI renders a form with these descriptions and defaults; a YAML file and the
CLI's flags fill the same fields.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.names import BackboneName
from tasks.fingerprint import digest
from tasks.records.samples import METADATA_COLUMNS
from tasks.storage.uri import is_s3_uri, key_prefix_inside, split_s3_uri

# Used when neither n_samples nor proportion is given (stated in the README).
DEFAULT_PROPORTION = 0.1
DEFAULT_OUTPUT_ROOT = Path("winnow-output")


def form_choices(schema: dict[str, Any]) -> None:
    """Make each optional choice one enum that includes null, in a model's JSON schema.

    Pydantic writes `Literal[...] | None` as anyOf(enum, null), which the Prefect UI shows as
    a free-text box behind a type switch; an enum with null in it shows as a select with an
    empty choice, and the form still submits null for a field left empty.
    """
    for field in schema.get("properties", {}).values():
        branches = field.get("anyOf", [])
        choices = [branch for branch in branches if "enum" in branch]
        if len(branches) == 2 and len(choices) == 1 and {"type": "null"} in branches:
            del field["anyOf"]
            field["enum"] = [*choices[0]["enum"], None]


class Section(BaseModel):
    """The base of every configuration section: frozen, and unknown fields are errors."""

    # A misspelt field is an error, never silently ignored. The JSON schema is the Prefect
    # UI's run form: a choice that may be left empty is a select there (form_choices).
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=form_choices)

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_or_false_for_a_number(cls, value: object, info: ValidationInfo) -> object:
        # pydantic takes true for 1 in a number field (n_samples: true selected one sample);
        # a count or a share is never a yes or no.
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and wants_a_number(field.annotation):
            raise ValueError("a number is required, not true or false")
        return value


def wants_a_number(annotation: object) -> bool:
    """Whether a field of this type holds an int or a float (possibly None), not a bool."""
    options = get_args(annotation) or (annotation,)
    return bool not in options and any(option in (int, float) for option in options)


class InputsConfig(Section):
    """Which files of the source are used, and how many samples make a shard."""

    relevant_filenames: str | None = Field(
        None,
        description="File of gitignore-style patterns ('*', '**', '!' negation) that narrows "
        "which files of the source are used; a relative path is read from the source.",
    )
    shard_size: int = Field(
        2000, ge=1, le=100_000, description="Samples per shard: the unit of caching and parallelism."
    )


class ChecksConfig(Section):
    """Checks on the samples: decompression bombs, exact duplicates and near duplicates.

    And how JPEGs are decoded to check them.
    """

    max_image_pixels: int = Field(
        178_956_970,
        ge=1,
        description="Images with more pixels are rejected as decompression bombs "
        "(Pillow's own limit by default).",
    )
    remove_exact_duplicates: bool = Field(
        True, description="Mark files whose content hash equals an earlier file's as duplicates."
    )
    near_duplicate_distance: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Mark samples whose embedding is within this cosine distance of an earlier "
        "sample's (the datapool's first) as near duplicates, never selected; off when empty. "
        "Re-encoded or slightly resized copies are within about 0.01.",
    )
    jpeg_decoder: Literal["pillow", "nvimgcodec"] = Field(
        "pillow",
        description="How inspection decodes JPEGs: pillow (libjpeg-turbo, reduced in the DCT), or "
        "nvimgcodec (NVIDIA nvImageCodec: nvJPEG on a GPU, for machines whose CPU cores are the "
        "limit; its CPU backend without a GPU, slower than pillow). Needs the gpu-decode extra.",
    )


class TrainingConfig(Section):
    """The SimCLR model: whether and how it is trained, and the network it trains."""

    enabled: bool = Field(
        True,
        description="Train a SimCLR model when the datapool has none yet. Off: use `checkpoint`, "
        "or a seeded untrained network if none is given.",
    )
    retrain: bool = Field(
        False,
        description="Train a new model even though the datapool has one, and re-embed the whole "
        "pool with it (earlier selections stand). Off: new samples are embedded with the "
        "datapool's model, so all embeddings stay comparable.",
    )
    checkpoint: str | None = Field(
        None, description="A winnow checkpoint.pt to start training from, or to embed with."
    )
    backbone: BackboneName = Field("resnet18", description="ResNet depth.")
    width: int = Field(64, ge=4, le=256, description="Channels of the first ResNet stage (64 is standard).")
    input_size: int = Field(64, ge=32, le=512, description="Square input side in pixels.")
    embedding_dim: int = Field(128, ge=2, le=4096, description="Embedding dimension.")
    pixel_grid: int = Field(
        8,
        ge=0,
        le=64,
        description="Side of the low-resolution copy of each image (average-pooled) that joins the "
        "backbone's features before the embedding's principal components; 0: the backbone alone. "
        "input_size must be a multiple of it.",
    )
    epochs: int = Field(
        20, ge=1, le=10_000, description="Passes over the clean images, at most (see budget_minutes)."
    )
    budget_minutes: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="Training stops after this many minutes, its learning rate decayed to zero by "
        "then, even if epochs remain. Default: 10 on the CPU, 120 on a GPU.",
    )
    max_images: int = Field(
        100_000,
        ge=2,
        description="Train on a seeded sample of at most this many clean images; a larger pool is "
        "still embedded whole.",
    )
    batch_size: int = Field(64, ge=2, le=8192, description="Images per step (two views each).")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="AdamW learning rate (cosine decay).")
    temperature: float = Field(0.5, gt=0, le=10, description="NT-Xent temperature.")
    seed: int = Field(0, ge=0, description="Seeds initialisation, augmentation and batch order.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train.")

    @model_validator(mode="after")
    def _pixel_grid_divides_the_input(self) -> TrainingConfig:
        if self.pixel_grid and self.input_size % self.pixel_grid:
            raise FieldError(
                ("pixel_grid",), f"input_size {self.input_size} is not a multiple of {self.pixel_grid}"
            )
        return self


class EmbeddingConfig(Section):
    """How ONNX Runtime embeds the samples with the model."""

    batch_size: int | None = Field(
        None,
        ge=1,
        le=8192,
        description="Fixed batch shape; the last batch is padded to it. Default: 256 on a GPU "
        "(smaller batches leave it waiting on launches), 64 on the CPU.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime execution provider: CUDA when usable under auto."
    )
    num_threads: int | None = Field(None, ge=1, description="CPU provider threads; default: every core.")
    precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        "auto",
        description="auto: int8 on the CPU (about 2x faster), fp16 on a GPU; either is kept only "
        "if every calibration image's embedding stays within cosine 0.99 of fp32.",
    )
    cuda_graph: bool = Field(
        False,
        description="Replay the model as a CUDA graph (CUDA provider; the fixed batch is bound to "
        "device buffers): less launch overhead. Off until measured on a GPU.",
    )


class VideoConfig(Section):
    """How videos are sampled into frames, and how the selected frames are written."""

    every_n_frames: int | None = Field(
        None,
        ge=1,
        description="Sample every n-th frame (0, n, 2n, ...). With none of every_n_frames, fps "
        "and keyframes_only, every frame is a sample.",
    )
    fps: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="Sample at this rate: the first frame at or after each multiple of 1/fps "
        "seconds from the first frame (deterministic for variable frame rate too).",
    )
    keyframes_only: bool = Field(
        False,
        description="Sample only the keyframes; the others are not even decoded (much faster).",
    )
    max_frames_per_video: int | None = Field(
        None, ge=1, description="Stop sampling a video after this many frames; no limit when empty."
    )
    sequence_length: int | None = Field(
        None,
        ge=2,
        description="Select windows of this many consecutive sampled frames of one video, scored "
        "by their mean embedding, instead of single samples (images are then not selected); "
        "n_samples still counts frames.",
    )
    frame_format: Literal["png", "jpeg"] = Field(
        "png", description="Image format of the selected frames written under selected_frames/."
    )

    @model_validator(mode="after")
    def _one_sampling_mode(self) -> VideoConfig:
        modes = [
            name
            for name, given in (
                ("every_n_frames", self.every_n_frames is not None),
                ("fps", self.fps is not None),
                ("keyframes_only", self.keyframes_only),
            )
            if given
        ]
        if len(modes) > 1:
            raise ValueError(f"give one of every_n_frames, fps and keyframes_only, not {' and '.join(modes)}")
        return self


# Metadata a METADATA input can name: every sample has these (`folder`: the key's first folder).
BUILTIN_METADATA_KEYS = frozenset({"width", "height", "bytes", "folder", *METADATA_COLUMNS})
CATEGORICAL_METADATA_KEYS = frozenset({"folder"})


class FieldError(ValueError):
    """A validation error about a field below the validator's own.

    `path` continues the location pydantic reports, so the message names the exact field
    (`selection.strategies.0.input.key`), not only the model that checked it.
    """

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(part) for part in path)}: {message}")
        self.path = path
        self.message = message


class StrategyInput(Section):
    """What a selection strategy looks at: embeddings, metadata, scores or random values."""

    type: Literal["EMBEDDINGS", "METADATA", "SCORES", "RANDOM"] = Field(
        "EMBEDDINGS", description="What the strategy looks at."
    )
    key: str | None = Field(
        None,
        description=f"For METADATA: one of {', '.join(sorted(BUILTIN_METADATA_KEYS))}, a named group of "
        "selection.metadata_from_key, or a column of selection.metadata_file.",
    )
    file: str | None = Field(
        None,
        description="For SCORES: a CSV or Parquet file with an `id` (sample id) or `key` (file key) "
        "column and the score column; an absolute path or a key inside the source.",
    )
    score: str | None = Field(None, description="For SCORES: the column of `file` that holds the score.")
    random_seed: int = Field(0, ge=0, description="For RANDOM: seeds the random values.")

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> StrategyInput:
        if (self.type == "METADATA") != (self.key is not None):
            raise ValueError("METADATA, and only METADATA, takes a key")
        if (self.type == "SCORES") != (self.file is not None and self.score is not None):
            raise ValueError("SCORES, and only SCORES, takes a file and a score column")
        return self


class StrategyRule(Section):
    """How a selection strategy uses its input, and the settings of that use."""

    type: Literal[
        "REPRESENTATIVE", "DIVERSITY", "TYPICALITY", "SIMILARITY", "WEIGHTS", "BALANCE", "THRESHOLD"
    ] = Field(
        "DIVERSITY",
        description="How the input is used. REPRESENTATIVE: k-medoids, the picks nearest to as many "
        "samples as possible (combines with THRESHOLD only); DIVERSITY: greedy k-center.",
    )
    strength: float = Field(1.0, description="Exponent of this objective; negative inverts it.")
    target: dict[str, float] | None = Field(
        None, description="For BALANCE: the share of each category (summing to 1); default uniform."
    )
    operation: Literal["<", "<=", ">", ">="] | None = Field(None, description="For THRESHOLD.")
    value: float | None = Field(None, description="For THRESHOLD: what the key is compared with.")
    neighbours: int = Field(
        10, ge=1, le=1000, description="For TYPICALITY: the k of the k nearest neighbours."
    )
    query: tuple[str, ...] | None = Field(
        None, description="For SIMILARITY: ids of samples to find more like (they must be in the pool)."
    )
    query_images: tuple[str, ...] | None = Field(
        None,
        description="For SIMILARITY: image files to find more like (absolute paths or keys inside "
        "the source); embedded with the run's model.",
    )

    @model_validator(mode="after")
    def _complete(self) -> StrategyRule:
        if self.type == "THRESHOLD" and (self.operation is None or self.value is None):
            raise ValueError("THRESHOLD needs an operation (<, <=, >, >=) and a value")
        if (self.type == "SIMILARITY") != bool(self.query or self.query_images):
            raise ValueError(
                "SIMILARITY, and only SIMILARITY, takes a query: sample ids (query) or image files "
                "(query_images)"
            )
        if self.target is not None:
            if self.type != "BALANCE":
                raise ValueError("target is only for BALANCE")
            if abs(sum(self.target.values()) - 1.0) > 1e-6 or min(self.target.values()) < 0:
                raise ValueError(f"BALANCE target {self.target} must be shares that sum to 1")
        return self


EMBEDDING_STRATEGIES = ("REPRESENTATIVE", "DIVERSITY", "TYPICALITY", "SIMILARITY")


class SelectionStrategy(Section):
    """One selection strategy: an input and the rule applied to it."""

    input: StrategyInput = StrategyInput()
    strategy: StrategyRule = StrategyRule()

    @model_validator(mode="after")
    def _input_fits_strategy(self) -> SelectionStrategy:
        kind, source, key = self.strategy.type, self.input.type, self.input.key
        if kind in EMBEDDING_STRATEGIES and source != "EMBEDDINGS":
            raise ValueError(f"{kind} works on EMBEDDINGS")
        if kind == "BALANCE" and source != "METADATA":
            raise ValueError("BALANCE works on a METADATA key")
        if kind == "THRESHOLD" and source not in ("METADATA", "SCORES"):
            raise ValueError("THRESHOLD works on a METADATA key or SCORES")
        if kind in ("WEIGHTS", "THRESHOLD") and key in CATEGORICAL_METADATA_KEYS:
            raise ValueError(f"{kind} needs a numeric key, and {key!r} is a category")
        if kind == "WEIGHTS" and source == "EMBEDDINGS":
            raise ValueError("WEIGHTS works on a METADATA key, SCORES or RANDOM")
        return self


DIVERSITY_ONLY = (SelectionStrategy(),)
REPRESENTATIVE_ONLY = (SelectionStrategy(strategy=StrategyRule(type="REPRESENTATIVE")),)


class SelectionConfig(Section):
    """What to select for: the strategies, custom metadata and where selection runs."""

    min_distance: float | None = Field(
        None,
        ge=0,
        le=2,
        description="For DIVERSITY: leave out every sample closer than this (Euclidean distance "
        "between unit embeddings) to a pick, this run's or an earlier one's; selection ends when "
        "none is left.",
    )
    seed: int = Field(
        0,
        ge=0,
        description="Seeds k-medoids' start, greedy k-center's first pick and the random baselines.",
    )
    metadata_file: str | None = Field(
        None,
        description="Custom metadata: a CSV or Parquet file with an `id` (sample id) or `key` (file "
        "key) column; every other column is a METADATA key. An absolute path or a key inside the "
        "source.",
    )
    metadata_from_key: str | None = Field(
        None,
        description="Custom metadata from each sample's key: a regular expression with named groups, "
        r"searched in the key; each group is a categorical METADATA key, e.g. `(?P<camera>cam\d+)/`.",
    )
    strategies: tuple[SelectionStrategy, ...] = Field(
        REPRESENTATIVE_ONLY,
        min_length=1,
        description="What to select for, in the Lightly Worker's shape: a list of {input: {type, key}, "
        "strategy: {type, strength, ...}}. THRESHOLDs filter; the rest are combined. The default, "
        "REPRESENTATIVE, picks samples that stand for their neighbourhoods (k-medoids).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where greedy k-center runs (DIVERSITY alone): torch on the GPU when usable under "
        "auto, numpy on the CPU otherwise.",
    )
    copy_selected: bool = Field(
        False,
        description="Also copy the selected images to `<output>/selected/<key>` (server-side "
        "when source and output are on the same S3 endpoint).",
    )

    @field_validator("metadata_from_key")
    @classmethod
    def _pattern_has_named_groups(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            groups = set(re.compile(pattern).groupindex)
        except re.error as error:
            raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
        if not groups:
            raise ValueError(f"{pattern!r} has no named group, e.g. (?P<camera>cam\\d+)")
        if groups & BUILTIN_METADATA_KEYS:
            raise ValueError(f"groups {sorted(groups & BUILTIN_METADATA_KEYS)} shadow built-in metadata")
        return pattern

    @model_validator(mode="after")
    def _representative_stands_alone(self) -> SelectionConfig:
        """k-medoids optimises one objective over the whole candidate set.

        It takes the candidates THRESHOLDs leave, and nothing else can weigh into it.
        """
        kinds = [rule.strategy.type for rule in self.strategies]
        if "REPRESENTATIVE" in kinds:
            index = kinds.index("REPRESENTATIVE")
            others = sorted({k for k in kinds if k != "THRESHOLD"} - {"REPRESENTATIVE"})
            if others or kinds.count("REPRESENTATIVE") > 1:
                raise FieldError(
                    ("strategies", index, "strategy", "type"),
                    f"REPRESENTATIVE combines only with THRESHOLD, not with {others or 'itself'}; for a "
                    "weighted mix use TYPICALITY and DIVERSITY",
                )
            if self.strategies[index].strategy.strength != 1.0:
                raise FieldError(
                    ("strategies", index, "strategy", "strength"),
                    "REPRESENTATIVE has no strength to set (it is not combined with other objectives)",
                )
        if self.min_distance is not None and "DIVERSITY" not in kinds:
            raise FieldError(
                ("min_distance",), "min_distance applies to a DIVERSITY strategy, and there is none"
            )
        return self

    @property
    def diversity_only(self) -> bool:
        """DIVERSITY on its own, with the default input and settings."""
        return self.strategies == DIVERSITY_ONLY

    @property
    def alone(self) -> bool:
        """REPRESENTATIVE or DIVERSITY on its own: no thresholds, metadata or other objectives."""
        return self.diversity_only or self.strategies == REPRESENTATIVE_ONLY

    @property
    def representative(self) -> bool:
        """REPRESENTATIVE, alone or after THRESHOLDs."""
        return any(rule.strategy.type == "REPRESENTATIVE" for rule in self.strategies)

    @property
    def key_groups(self) -> frozenset[str]:
        """The categorical keys metadata_from_key defines."""
        if self.metadata_from_key is None:
            return frozenset()
        return frozenset(re.compile(self.metadata_from_key).groupindex)

    @model_validator(mode="after")
    def _metadata_keys_exist(self) -> SelectionConfig:
        """Keys are checked here as far as the configuration knows them.

        A key that may be a column of metadata_file is checked when the file is read, before any
        image is.
        """
        known = BUILTIN_METADATA_KEYS | self.key_groups
        for index, rule in enumerate(self.strategies):
            key = rule.input.key
            if key is None or key in known:
                if key in self.key_groups and rule.strategy.type in ("WEIGHTS", "THRESHOLD"):
                    raise FieldError(
                        ("strategies", index, "input", "key"),
                        f"{rule.strategy.type} needs a numeric key, and {key!r} (metadata_from_key) "
                        "is a category",
                    )
                continue
            if self.metadata_file is None:
                raise FieldError(
                    ("strategies", index, "input", "key"),
                    f"METADATA key {key!r} does not exist (known: {', '.join(sorted(known))}; "
                    "custom keys come from metadata_file or metadata_from_key)",
                )
        return self


class ReportConfig(Section):
    """The run report: whether it is written, its PDF, and how much its plots and galleries show."""

    enabled: bool = Field(
        True,
        description="Write the run report (report.html, report.pdf, report.json) into the run's folder.",
    )
    pdf: bool = Field(
        True,
        description="Also print report.html to report.pdf with headless Chromium; skipped, and "
        "said so in the log and run.json, where no Chromium is installed.",
    )
    max_points: int = Field(
        20_000,
        ge=100,
        le=1_000_000,
        description="Plots draw a seeded random subsample of at most this many samples (the "
        "selected ones first), so a report over millions stays fast and a few MB.",
    )
    thumbnails: int = Field(
        48,
        ge=0,
        le=1_000,
        description="Thumbnails a gallery shows at most (selected, near duplicates, atypical).",
    )
    seed: int = Field(0, ge=0, description="Seeds the plots' subsample.")
    gallery: int = Field(
        24,
        ge=0,
        le=200,
        description="Picks shown as thumbnails in the flow run's `curate-gallery` artifact (0: none).",
    )
    link_hours: float = Field(
        24.0,
        ge=0,
        le=168,
        description="With an S3 output, the Prefect UI links to the report and the selected list "
        "through presigned https URLs that work this many hours (S3 allows at most 168, and "
        "temporary credentials end them sooner); 0 shows the s3:// URIs as text instead.",
    )


class StateConfig(Section):
    """How the datapool keeps its manifest: merged at a threshold, and how many versions stay readable."""

    compact_after_segments: int = Field(
        16,
        ge=1,
        le=1_000,
        description="Each commit adds its run's changes as one manifest segment; once a version has "
        "more than this many, the run merges them into one (its own version, same rows).",
    )
    keep_versions: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Manifest segments that none of the newest this-many versions names are deleted "
        "after a commit; every version's small log entry stays.",
    )


class ExecutionConfig(Section):
    """Where the per-shard stages run and keep their results: locally or on a Dask cluster."""

    engine: Literal["local", "dask"] = Field(
        "local",
        description="Where the per-shard stages (inspect, embed) run: local, a bounded thread pool "
        "in the flow's process that decodes images in n_workers processes; dask, a Dask "
        "cluster's workers (training and selection stay in the flow's process either way).",
    )
    address: str | None = Field(
        None,
        description="The Dask scheduler, e.g. tcp://scheduler:8786; without one, dask starts a "
        "LocalCluster on this machine for the run. Every worker must reach the source and the "
        "shard store (see shard_store).",
    )
    n_workers: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Worker processes on this machine: the local engine's image-decoding "
        "processes, or the LocalCluster dask starts without an address; default: one a core.",
    )
    gpu_resource: str | None = Field(
        None,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]*$",
        description="A Dask worker resource (e.g. GPU, from `dask worker --resources GPU=1`): each "
        "embed task needs one, so embedding runs only on workers that have it.",
    )
    shard_store: Literal["cache", "output"] | None = Field(
        None,
        description="Where the per-shard stages keep their results (manifests, samples tables, "
        "uint8 images, embeddings): cache, the cache_dir (one machine, or a folder every worker "
        "mounts); output, `<output>/shards` (S3: workers that share no disk). Default: output with "
        "an address, cache otherwise.",
    )

    @property
    def shards_in_output(self) -> bool:
        """Whether the per-shard results are kept under <output>/shards rather than the cache_dir."""
        return self.shard_store == "output" or (self.shard_store is None and self.address is not None)

    @model_validator(mode="after")
    def _cluster_options_need_dask(self) -> ExecutionConfig:
        if self.engine == "local":
            given = [name for name in ("address", "n_workers", "gpu_resource") if getattr(self, name)]
            if given:
                raise FieldError((given[0],), "needs engine: dask")
        elif self.address is not None and self.n_workers is not None:
            raise FieldError(("n_workers",), "sizes the LocalCluster dask starts; not with an address")
        elif self.address is None and self.gpu_resource is not None:
            # A LocalCluster's workers all share this machine's GPUs: the local engine suits it.
            raise FieldError(("gpu_resource",), "names a resource of a cluster's workers: needs an address")
        return self

    @field_validator("address")
    @classmethod
    def _address_names_a_scheduler(cls, address: str | None) -> str | None:
        if address is not None and not re.fullmatch(r"(tcp|tls|ucx|inproc)://[^\s/]+|[^\s/:]+:\d+", address):
            raise ValueError(f"{address!r} is not a Dask scheduler address (tcp://host:8786)")
        return address


class RunConfig(Section):
    """A run's whole configuration: the source, the output, what to select and every section."""

    source: str = Field(..., description="Folder or s3://bucket/prefix of images to curate.")
    output: str | None = Field(
        None,
        description="Folder or s3://bucket/prefix where runs and the datapool are written; "
        "default `winnow-output/<source name>`.",
    )
    n_samples: int | None = Field(None, ge=1, description="How many new samples to select this run.")
    proportion: float | None = Field(
        None,
        gt=0,
        le=1,
        description=f"Share of this run's new clean samples to select (default {DEFAULT_PROPORTION}).",
    )
    datapool: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Name of the datapool block that remembers what was processed; default: "
        "named after the output, so running the same command again is incremental.",
    )
    process_all: bool = Field(
        False, description="Forget the datapool: process, embed and select from every sample again."
    )
    aws_credentials: str | None = Field(
        None,
        description="Name of a prefect-aws AwsCredentials block for S3 (its client parameters "
        "may set endpoint_url for MinIO and the like); default: boto3's credential chain.",
    )
    cache_dir: str | None = Field(
        None,
        description="Local folder for decoded images, models and embeddings; default `<output>/cache` "
        "for a local output, `winnow-output/.cache/<datapool>` for S3.",
    )
    output_layout: Literal["winnow", "lightly"] = Field(
        "winnow",
        description="lightly: also write the Lightly Worker's output files into each run's folder, "
        "under `lightly/` (data/embeddings.csv, filenames/corrupt_filenames.txt, "
        "sampled_filenames_excluding_datapool.txt, report.json), for scripts that read them.",
    )
    inputs: InputsConfig = InputsConfig()
    checks: ChecksConfig = ChecksConfig()
    training: TrainingConfig = TrainingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    selection: SelectionConfig = SelectionConfig()
    video: VideoConfig = VideoConfig()
    report: ReportConfig = ReportConfig()
    state: StateConfig = StateConfig()
    execution: ExecutionConfig = ExecutionConfig()

    @field_validator("source")
    @classmethod
    def _source_exists(cls, source: str) -> str:
        if not source.strip():  # Path("") is the current folder: never curate it by accident
            raise ValueError("source is empty: give a folder or s3://bucket/prefix")
        if is_s3_uri(source):
            split_s3_uri(source)
            return source.rstrip("/")
        if "://" in source:
            raise ValueError(f"{source!r}: a source is a local folder or s3://bucket/prefix")
        path = Path(source).expanduser()
        if not path.exists():
            raise ValueError(f"source folder {source!r} does not exist")
        if not path.is_dir():
            raise ValueError(f"source {source!r} is not a folder")
        return str(path.resolve())

    @field_validator("output")
    @classmethod
    def _output_is_a_location(cls, output: str | None) -> str | None:
        if output is None:
            return None
        if is_s3_uri(output):
            split_s3_uri(output)
            return output.rstrip("/")
        if "://" in output:
            raise ValueError(f"{output!r}: an output is a local folder or s3://bucket/prefix")
        return str(Path(output).expanduser().resolve())

    @model_validator(mode="after")
    def _output_is_not_the_source(self) -> RunConfig:
        if key_prefix_inside(self.output_uri, self.source) == "":
            raise FieldError(
                ("output",),
                f"{self.output_uri} is the source itself: the run's files would mix with the samples; give "
                "a folder or prefix of its own (inside the source is fine: it is left out of the listing)",
            )
        return self

    @model_validator(mode="after")
    def _one_way_to_say_how_many(self) -> RunConfig:
        if self.n_samples is not None and self.proportion is not None:
            raise ValueError("give n_samples or proportion, not both")
        return self

    @model_validator(mode="after")
    def _sequences_are_selected_for_diversity(self) -> RunConfig:
        if self.video.sequence_length is not None and not self.selection.alone:
            raise ValueError(
                "video.sequence_length selects windows by REPRESENTATIVE or DIVERSITY alone: leave out "
                "the other selection.strategies"
            )
        return self

    @property
    def output_uri(self) -> str:
        """The output folder or S3 URI: `output`, or winnow-output/<source name> by default."""
        if self.output is not None:
            return self.output
        name = self.source.rstrip("/").rsplit("/", 1)[-1]
        return str((DEFAULT_OUTPUT_ROOT / name).resolve())

    @property
    def excluded_from_source(self) -> tuple[str, ...]:
        """Key prefixes of the source that the run writes itself (output, cache): never samples.

        Without this, an output inside the source would be curated by the next run: its
        selected frames and copies found as new files, copies nested inside copies.
        """
        locations = (self.output_uri, str(self.cache_path))
        inside = {prefix for prefix in (key_prefix_inside(p, self.source) for p in locations) if prefix}
        return tuple(sorted(p for p in inside if not any(p.startswith(f"{other}/") for other in inside)))

    @property
    def datapool_name(self) -> str:
        """The datapool block's name: `datapool`, or by default one named after the output."""
        return self.datapool or default_datapool_name(self.output_uri)

    @property
    def cache_path(self) -> Path:
        """The local cache folder: `cache_dir`, else <output>/cache, or under winnow-output/.cache for S3."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser().resolve()
        if is_s3_uri(self.output_uri):
            return (DEFAULT_OUTPUT_ROOT / ".cache" / default_datapool_name(self.output_uri)).resolve()
        return Path(self.output_uri) / "cache"

    def target_count(self, clean: int) -> int:
        """How many samples to select out of `clean` candidates (before capping at `clean`)."""
        if self.n_samples is not None:
            return self.n_samples
        proportion = self.proportion if self.proportion is not None else DEFAULT_PROPORTION
        return max(1, math.ceil(proportion * clean)) if clean else 0


def default_datapool_name(output_uri: str) -> str:
    """A block name (lowercase, digits, dashes) after the output, unique per output URI."""
    stem = re.sub(r"[^a-z0-9]+", "-", output_uri.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-")
    return f"{stem or 'output'}-{digest(output_uri)[:8]}"


def set_field(fields: dict[str, Any], path: str | list[str], value: Any) -> None:
    """Set the field at `path` ('training.epochs', or its parts) in nested `fields`, making sections.

    A ValueError names a part of the path that holds a value rather than a section.
    """
    *sections, name = path.split(".") if isinstance(path, str) else path
    target = fields
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise ValueError(f"{section} is not a section")
    target[name] = value


def describe_validation_error(error: ValidationError) -> str:
    """One line a field: 'training.epochs: Input should be greater than or equal to 1'."""
    lines = []
    for problem in error.errors():
        location, message = tuple(problem["loc"]), problem["msg"]
        cause = problem.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):
            location, message = location + cause.path, cause.message
        field = ".".join(str(part) for part in location) or "config"
        lines.append(f"{field}: {message}")
    return "invalid configuration: " + "; ".join(lines)
