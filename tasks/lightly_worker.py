"""Lightly Worker configurations, mapped onto winnow's own fields.

Teams moving from the Lightly Worker bring the `worker_config`, `selection_config` and
`lightly_config` they scheduled runs with, or the `key=value` arguments of their `docker
run`. Each key that winnow can honour becomes a winnow field; a key that only makes sense
against the Lightly platform (a datasource id, a token, predictions of a Lightly task,
object-level crops) is an error naming the key and what to use instead, before any work.
A key whose value asks for what winnow does anyway (the corruptness check on, the
datapool on) is accepted; one that asks for something else is an error. Nothing is
silently dropped: `Translation.notes` says what was accepted without a field of its own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from tasks.config import set_field

LIGHTLY_SECTIONS = ("worker_config", "selection_config", "lightly_config")

# Lightly's built-in metadata (computed by its worker) and winnow's name for the same figure.
LIGHTLY_METADATA_KEYS = {
    "lightly.sharpness": "sharpness",
    "lightly.snr": "snr",
    "lightly.uniformRowRatio": "uniform_row_ratio",
    "lightly.luminance": "luminance",
    "lightly.contrast": "contrast",
    "lightly.sizeInBytes": "bytes",
    "lightly.width": "width",
    "lightly.height": "height",
}
THRESHOLD_OPERATIONS = {"SMALLER": "<", "SMALLER_EQUAL": "<=", "BIGGER": ">", "BIGGER_EQUAL": ">="}
BACKBONES = {"resnet-18": "resnet18", "resnet-34": "resnet34"}


class LightlyConfigError(ValueError):
    """A Lightly Worker key winnow cannot honour: names the key and what to use instead."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass
class Translation:
    """winnow's fields for a Lightly configuration, and notes on what was accepted as is."""

    fields: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def set(self, path: str, value: Any) -> None:
        """Set winnow's field at the dotted `path` ('training.epochs')."""
        set_field(self.fields, path, value)


def is_lightly_config(fields: Mapping[str, Any]) -> bool:
    """Whether a configuration file is in the Lightly Worker's shape."""
    return any(section in fields for section in LIGHTLY_SECTIONS)


def parse_override(argument: str) -> tuple[list[str], Any]:
    """`selection_config.n_samples=50` -> (['selection_config', 'n_samples'], 50).

    Values are read as YAML scalars, so True, 50 and 0.5 are what they look like. A key
    without a section (`remove_exact_duplicates=True`, `datasource.process_all=True`) is the
    worker's, as the docker command took it.
    """
    key, separator, text = argument.partition("=")
    if not separator or not key:
        raise LightlyConfigError(argument, "a Lightly Worker argument is key=value")
    path = key.split(".")
    if path[0] == "lightly":  # Hydra's spelling for lightly_config (lightly.trainer.max_epochs=10)
        path = ["lightly_config", *path[1:]]
    elif path[0] not in LIGHTLY_SECTIONS:
        path = ["worker_config", *path]
    return path, yaml.safe_load(text) if text else ""


def with_overrides(document: Mapping[str, Any], arguments: list[str]) -> dict[str, Any]:
    """The Lightly document with the docker-style `key=value` arguments written into it."""
    merged = copy.deepcopy(dict(document))
    for argument in arguments:
        path, value = parse_override(argument)
        try:
            set_field(merged, path, value)
        except ValueError as error:
            raise LightlyConfigError(argument, str(error)) from None
    return merged


def translate(document: Mapping[str, Any]) -> Translation:
    """The winnow fields for a Lightly Worker configuration, written with the Lightly layout.

    Keys outside the Lightly sections (`source`, `output`, ...) are winnow's own and pass
    through; winnow's fields win where both say something.
    """
    translation = Translation()
    translation.set("output_layout", "lightly")
    for section in LIGHTLY_SECTIONS:
        walk(section, document.get(section) or {}, translation)
    own = {key: value for key, value in document.items() if key not in LIGHTLY_SECTIONS}
    translation.fields = merge(translation.fields, own)
    return translation


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` written on top, section by section."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def walk(prefix: str, values: Any, translation: Translation) -> None:
    """Map every key of the section `prefix` by the tables below, or fail naming it."""
    if not isinstance(values, Mapping):
        raise LightlyConfigError(prefix, "must be a mapping of keys")
    for key, value in values.items():
        path = f"{prefix}.{key}"
        if path in SECTIONS:
            walk(path, value or {}, translation)
        elif path in RENAMED:
            translation.set(RENAMED[path], value)
        elif path in MAPPED:
            MAPPED[path](path, value, translation)
        elif path in WHAT_WINNOW_DOES:
            expected, why_not = WHAT_WINNOW_DOES[path]
            if value != expected:
                raise LightlyConfigError(path, why_not)
            translation.notes.append(f"{path}: {value!r} is what winnow does")
        elif path in DECIDED_BY_WINNOW:
            translation.notes.append(f"{path}: {DECIDED_BY_WINNOW[path]}")
        elif path in REFUSED:
            raise LightlyConfigError(path, REFUSED[path])
        else:
            raise LightlyConfigError(
                path, "not a key winnow knows; see README, 'Coming from the Lightly Worker'"
            )


def sequence_length(path: str, value: Any, translation: Translation) -> None:
    """selected_sequence_length: 1 (the worker's default) is no sequences."""
    translation.set("video.sequence_length", None if value == 1 else value)


def training_enabled(path: str, value: Any, translation: Translation) -> None:
    """enable_training: winnow has no pretrained weights, so it trains either way."""
    translation.set("training.enabled", True)
    if value is not True:
        translation.notes.append(
            f"{path}: {value!r}: winnow has no pretrained weights, so it trains its own model "
            "(training.enabled; training.checkpoint embeds with a given one)"
        )


def coreset(path: str, value: Any, translation: Translation) -> None:
    """The old worker's `method: coreset` is DIVERSITY."""
    if value != "coreset":
        raise LightlyConfigError(path, "winnow's methods are selection.strategies; coreset is DIVERSITY")
    translation.set("selection.strategies", [{"strategy": {"type": "DIVERSITY"}}])


def stopping_samples(path: str, value: Any, translation: Translation) -> None:
    """The old worker's stopping_condition.n_samples: a count, a share below 1, or -1 (unset)."""
    if isinstance(value, float) and 0 < value < 1:
        translation.set("proportion", value)
    elif value != -1:
        translation.set("n_samples", value)


def stopping_distance(path: str, value: Any, translation: Translation) -> None:
    """The old worker's stopping_condition.min_distance (-1: unset), for its coreset."""
    if value != -1:
        coreset(path, "coreset", translation)
        translation.set("selection.min_distance", value)


def strategies(path: str, value: Any, translation: Translation) -> None:
    """selection_config.strategies, each in winnow's spelling; a DIVERSITY stop becomes min_distance."""
    if not isinstance(value, list):
        raise LightlyConfigError(path, "must be a list of {input, strategy}")
    translation.set("selection.strategies", [strategy(rule, f"{path}.{i}") for i, rule in enumerate(value)])
    for rule in value:
        distance = (rule.get("strategy") or {}).get("stopping_condition_minimum_distance")
        if distance is not None:  # Lightly's DIVERSITY stops there; winnow's min_distance is that stop
            translation.set("selection.min_distance", distance)


def backbone(path: str, value: Any, translation: Translation) -> None:
    """lightly_config.model.name: the ResNets winnow trains."""
    if value not in BACKBONES:
        raise LightlyConfigError(path, f"{value!r}: winnow trains {', '.join(BACKBONES)}")
    translation.set("training.backbone", BACKBONES[value])


# The sections walked key by key; every other key is looked up in the tables below.
SECTIONS = frozenset(
    {
        "worker_config.datasource",
        "worker_config.datapool",
        "worker_config.stopping_condition",
        *(f"lightly_config.{part}" for part in ("trainer", "loader", "model", "collate", "criterion")),
    }
)
# Lightly keys that are winnow fields under another name.
RENAMED = {
    "worker_config.remove_exact_duplicates": "checks.remove_exact_duplicates",
    "worker_config.relevant_filenames_file": "inputs.relevant_filenames",
    "worker_config.checkpoint": "training.checkpoint",
    "worker_config.datapool.name": "datapool",
    "worker_config.datasource.process_all": "process_all",
    "selection_config.n_samples": "n_samples",
    "selection_config.proportion_samples": "proportion",
    "lightly_config.trainer.max_epochs": "training.epochs",
    "lightly_config.loader.batch_size": "training.batch_size",
    "lightly_config.model.out_dim": "training.embedding_dim",
    "lightly_config.collate.input_size": "training.input_size",
    "lightly_config.criterion.temperature": "training.temperature",
}
# Lightly keys whose mapping is more than a new name.
MAPPED = {
    "worker_config.selected_sequence_length": sequence_length,
    "worker_config.enable_training": training_enabled,
    "worker_config.method": coreset,
    "worker_config.stopping_condition.n_samples": stopping_samples,
    "worker_config.stopping_condition.min_distance": stopping_distance,
    "selection_config.strategies": strategies,
    "lightly_config.model.name": backbone,
}
# Keys whose one honourable value is what winnow does anyway: (that value, why no other).
WHAT_WINNOW_DOES = {
    "worker_config.enable_corruptness_check": (
        True,
        "winnow always checks: a file it cannot decode is never embedded",
    ),
    "worker_config.use_datapool": (True, "winnow always keeps a datapool; use --process-all to start over"),
    "worker_config.pretagging": (False, "winnow has no pretagging model"),
    "worker_config.datasource.bypass_verify": (
        False,
        "winnow always checks access to the output before any work",
    ),
    "worker_config.datasource.enable_datapool_update": (True, "a winnow run always commits its datapool"),
}
# Keys about the machine or the worker's life, which winnow decides for itself.
DECIDED_BY_WINNOW = {
    "worker_config.shutdown_when_job_finished": "a winnow run always ends when its job does",
    "lightly_config.loader.num_workers": "winnow sizes its workers to the machine",
    "lightly_config.trainer.gpus": "winnow trains on the GPU when there is one (training.device)",
    "lightly_config.trainer.precision": "winnow picks the training precision for the device",
}
PLATFORM_DATASOURCE = (
    "a Lightly platform datasource: give the bucket as --source s3://bucket/prefix, the output as "
    "--output, and credentials as an AwsCredentials block (--aws-credentials)"
)
# Keys of the Lightly platform, or of what winnow does not do: what to use instead.
REFUSED = {
    "worker_config.token": "the Lightly platform's token: winnow needs none; leave it out",
    "worker_config.worker": "the Lightly platform's worker id: winnow needs none; leave it out",
    "worker_config.datasource.id": PLATFORM_DATASOURCE,
    "worker_config.datasource.dataset_id": PLATFORM_DATASOURCE,
    "worker_config.datapool.dataset_id": "a Lightly dataset: winnow's datapool is named (--datapool)",
    "worker_config.object_level": "object-level selection is not supported: crop the objects into images "
    "and curate those",
    "worker_config.corruptness_check": "winnow has no partial-corruption threshold: a file is corrupt when "
    "it does not decode whole; leave the key out",
}


def strategy(rule: Mapping[str, Any], path: str) -> dict[str, Any]:
    """One Lightly strategy {input, strategy} in winnow's spelling."""
    extra = set(rule) - {"input", "strategy"}
    if extra:
        raise LightlyConfigError(
            f"{path}.{sorted(extra)[0]}", "a strategy holds an input and a strategy only"
        )
    return {
        "input": strategy_input(rule.get("input") or {}, f"{path}.input"),
        "strategy": strategy_rule(rule.get("strategy") or {}, f"{path}.strategy"),
    }


def strategy_input(given: Mapping[str, Any], path: str) -> dict[str, Any]:
    """EMBEDDINGS, METADATA (lightly.* keys renamed), SCORES (with winnow's file), RANDOM."""
    kind = given.get("type", "EMBEDDINGS")
    if "categories" in given:
        raise LightlyConfigError(
            f"{path}.categories", "predicted categories come from a Lightly task; leave it out"
        )
    if kind == "PREDICTIONS":
        raise LightlyConfigError(
            f"{path}.type",
            "PREDICTIONS come from a Lightly prediction task: give the predicted class of each sample "
            "as a column of selection.metadata_file and use a METADATA input with that key",
        )
    if kind == "EMBEDDINGS":
        for key in ("dataset_id", "tag_name"):
            if key in given:
                raise LightlyConfigError(
                    f"{path}.{key}",
                    "a Lightly tag: give the query images as strategy.query_images (files) or strategy.query "
                    "(sample ids)",
                )
        return dict(given)
    if kind == "METADATA":
        name = given.get("key")
        if isinstance(name, str) and name.startswith("lightly."):
            if name not in LIGHTLY_METADATA_KEYS:
                known = ", ".join(sorted(LIGHTLY_METADATA_KEYS))
                raise LightlyConfigError(f"{path}.key", f"{name!r} is not one winnow computes: {known}")
            return {**given, "key": LIGHTLY_METADATA_KEYS[name]}
        return dict(given)
    if kind == "SCORES":
        if "task" in given and "file" not in given:
            raise LightlyConfigError(
                f"{path}.task",
                "scores of a Lightly prediction task: give them as a CSV or Parquet file (input.file, with "
                "an `id` or `key` column and the score column named by input.score)",
            )
        return {key: value for key, value in given.items() if key != "task"}
    return dict(given)


def strategy_rule(given: Mapping[str, Any], path: str) -> dict[str, Any]:
    """DIVERSITY's stopping distance, THRESHOLD's operation and threshold; the rest as they are."""
    unsupported = {
        "stopping_condition_minimum_typicality",
        "stopping_condition_max_sum",
        "target_range",
        "distribution",
    }
    for key in sorted(unsupported & set(given)):
        raise LightlyConfigError(f"{path}.{key}", "winnow has no such setting; leave it out")
    rule = {key: value for key, value in given.items() if key != "stopping_condition_minimum_distance"}
    if "num_nearest_neighbors" in rule:
        rule["neighbours"] = rule.pop("num_nearest_neighbors")
    if rule.get("type") == "THRESHOLD":
        operation = rule.get("operation")
        if operation in THRESHOLD_OPERATIONS:
            rule["operation"] = THRESHOLD_OPERATIONS[operation]
        elif operation not in THRESHOLD_OPERATIONS.values():
            known = ", ".join(THRESHOLD_OPERATIONS)
            raise LightlyConfigError(f"{path}.operation", f"{operation!r} is not one of {known}")
        if "threshold" in rule:
            rule["value"] = rule.pop("threshold")
    return rule
