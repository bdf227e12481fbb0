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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

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
        *sections, name = path.split(".")
        target = self.fields
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value


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
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(document)))  # a deep copy
    for argument in arguments:
        path, value = parse_override(argument)
        target = merged
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise LightlyConfigError(argument, f"{part} is not a section")
        target[path[-1]] = value
    return merged


def translate(document: Mapping[str, Any]) -> Translation:
    """The winnow fields for a Lightly Worker configuration, written with the Lightly layout.

    Keys outside the Lightly sections (`source`, `output`, ...) are winnow's own and pass
    through; winnow's fields win where both say something.
    """
    translation = Translation()
    translation.set("output_layout", "lightly")
    for section, apply in (
        ("worker_config", worker_fields),
        ("selection_config", selection_fields),
        ("lightly_config", training_fields),
    ):
        values = document.get(section) or {}
        if not isinstance(values, Mapping):
            raise LightlyConfigError(section, "must be a mapping of keys")
        apply(values, translation)
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


def accept(path: str, value: Any, expected: Any, note: str, translation: Translation) -> None:
    """A key whose only honourable value is what winnow does anyway."""
    if value != expected:
        raise LightlyConfigError(path, note)
    translation.notes.append(f"{path}: {value!r} is what winnow does")


def worker_fields(worker: Mapping[str, Any], translation: Translation) -> None:
    """worker_config: duplicates, relevant files, sequences, the datasource and the checks."""
    for key, value in worker.items():
        path = f"worker_config.{key}"
        if key == "remove_exact_duplicates":
            translation.set("checks.remove_exact_duplicates", value)
        elif key == "relevant_filenames_file":
            translation.set("inputs.relevant_filenames", value)
        elif key == "selected_sequence_length":
            translation.set("video.sequence_length", None if value == 1 else value)
        elif key == "enable_corruptness_check":
            accept(
                path,
                value,
                True,
                "winnow always checks: a file it cannot decode is never embedded",
                translation,
            )
        elif key == "use_datapool":
            accept(
                path,
                value,
                True,
                "winnow always keeps a datapool; use --process-all to start over",
                translation,
            )
        elif key == "pretagging":
            accept(path, value, False, "winnow has no pretagging model", translation)
        elif key == "enable_training":
            translation.set("training.enabled", True)
            if value is not True:
                translation.notes.append(
                    f"{path}: {value!r}: winnow has no pretrained weights, so it trains its own model "
                    "(training.enabled; training.checkpoint embeds with a given one)"
                )
        elif key == "checkpoint":
            translation.set("training.checkpoint", value)
        elif key == "datapool":
            for name, setting in (value or {}).items():
                if name == "name":
                    translation.set("datapool", setting)
                else:
                    raise LightlyConfigError(
                        f"{path}.{name}", "winnow's datapool takes a name only (--datapool)"
                    )
        elif key == "stopping_condition":
            stopping_fields(value or {}, translation)
        elif key == "method":
            accept(
                path,
                value,
                "coreset",
                "winnow's coreset is a DIVERSITY strategy; see selection.strategies",
                translation,
            )
            translation.set("selection.strategies", [{"strategy": {"type": "DIVERSITY"}}])
        elif key in {"token", "worker"}:
            raise LightlyConfigError(
                path, "the Lightly platform's token and worker id: winnow needs neither; leave them out"
            )
        elif key == "shutdown_when_job_finished":
            translation.notes.append(f"{path}: a winnow run always ends when its job does")
        elif key == "datasource":
            datasource_fields(value or {}, translation)
        elif key == "object_level":
            raise LightlyConfigError(
                path, "object-level selection is not supported: crop the objects into images and curate those"
            )
        elif key == "corruptness_check":
            raise LightlyConfigError(
                path,
                "winnow has no partial-corruption threshold: a file is corrupt when it does not decode "
                "whole; leave the key out",
            )
        else:
            raise LightlyConfigError(
                path, "not a key winnow knows; see README, 'Coming from the Lightly Worker'"
            )


def stopping_fields(stopping: Mapping[str, Any], translation: Translation) -> None:
    """The old worker's stopping_condition: how many (a count, or a share below 1), and a distance."""
    for key, value in stopping.items():
        path = f"worker_config.stopping_condition.{key}"
        if key == "n_samples" and isinstance(value, float) and 0 < value < 1:
            translation.set("proportion", value)
        elif key == "n_samples" and value != -1:
            translation.set("n_samples", value)
        elif key == "min_distance" and value != -1:
            translation.set("selection.min_distance", value)
            translation.set("selection.strategies", [{"strategy": {"type": "DIVERSITY"}}])
        elif key not in {"n_samples", "min_distance"}:
            raise LightlyConfigError(path, "not a stopping condition winnow knows (n_samples, min_distance)")


def datasource_fields(datasource: Mapping[str, Any], translation: Translation) -> None:
    """worker_config.datasource: process_all, and the Lightly platform's keys (errors)."""
    for key, value in datasource.items():
        path = f"worker_config.datasource.{key}"
        if key == "process_all":
            translation.set("process_all", value)
        elif key == "bypass_verify":
            accept(
                path, value, False, "winnow always checks access to the output before any work", translation
            )
        elif key == "enable_datapool_update":
            accept(path, value, True, "a winnow run always commits its datapool", translation)
        elif key in {"id", "dataset_id", "token"}:
            raise LightlyConfigError(
                path,
                "a Lightly platform datasource: give the bucket as --source s3://bucket/prefix, the output "
                "as --output, and credentials as an AwsCredentials block (--aws-credentials)",
            )
        else:
            raise LightlyConfigError(path, "not a datasource key winnow knows")


def selection_fields(selection: Mapping[str, Any], translation: Translation) -> None:
    """selection_config: how many, and the strategies."""
    for key, value in selection.items():
        path = f"selection_config.{key}"
        if key == "n_samples":
            translation.set("n_samples", value)
        elif key == "proportion_samples":
            translation.set("proportion", value)
        elif key == "strategies":
            if not isinstance(value, list):
                raise LightlyConfigError(path, "must be a list of {input, strategy}")
            rules = [strategy(rule, f"{path}.{index}") for index, rule in enumerate(value)]
            translation.set("selection.strategies", rules)
            for rule in value:
                # Lightly's DIVERSITY stops at a distance; winnow's min_distance is that stop,
                # for the run's DIVERSITY strategy.
                distance = (rule.get("strategy") or {}).get("stopping_condition_minimum_distance")
                if distance is not None:
                    translation.set("selection.min_distance", distance)
        else:
            raise LightlyConfigError(path, "not a selection_config key winnow knows")


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


def training_fields(lightly: Mapping[str, Any], translation: Translation) -> None:
    """lightly_config: epochs, batch size, backbone, embedding size, input size, temperature."""
    honoured = {
        ("trainer", "max_epochs"): "training.epochs",
        ("loader", "batch_size"): "training.batch_size",
        ("model", "out_dim"): "training.embedding_dim",
        ("collate", "input_size"): "training.input_size",
        ("criterion", "temperature"): "training.temperature",
    }
    machine = {("loader", "num_workers"), ("trainer", "gpus"), ("trainer", "precision")}
    for section, values in lightly.items():
        if not isinstance(values, Mapping):
            raise LightlyConfigError(f"lightly_config.{section}", "must be a mapping of keys")
        for key, value in values.items():
            path = f"lightly_config.{section}.{key}"
            if (section, key) in honoured:
                translation.set(honoured[section, key], value)
            elif (section, key) == ("model", "name"):
                if value not in BACKBONES:
                    raise LightlyConfigError(path, f"{value!r}: winnow trains {', '.join(BACKBONES)}")
                translation.set("training.backbone", BACKBONES[value])
            elif (section, key) in machine:
                translation.notes.append(f"{path}: winnow sizes its workers and precision to the machine")
            else:
                raise LightlyConfigError(path, "not a training key winnow knows (see training.* instead)")
