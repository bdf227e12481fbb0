"""Discover: list the source's samples, filtered by the relevant-filenames file."""

from __future__ import annotations

import logging
from pathlib import Path

import pathspec

from tasks.records.keys import SAMPLE_EXTENSIONS, is_sample_key
from tasks.records.shards import Listing, write_listing
from tasks.storage.factory import open_storage
from tasks.storage.interface import ObjectInfo, Storage, read_file_or_key

logger = logging.getLogger(__name__)


def parse_relevant_filenames(text: str) -> pathspec.PathSpec:
    """Parse gitignore-style patterns.

    A key is relevant when the last pattern it matches is not negated ('!'). Blank lines and
    '#' comments are ignored.
    """
    return pathspec.PathSpec.from_lines("gitwildmatch", text.splitlines())


def is_excluded(key: str, excluded: tuple[str, ...]) -> bool:
    """Whether `key` lies under one of the `excluded` key prefixes (folders)."""
    return any(key.startswith(f"{prefix}/") for prefix in excluded)


def list_samples(
    storage: Storage, relevant: pathspec.PathSpec | None, excluded: tuple[str, ...] = ()
) -> list[ObjectInfo]:
    """Every image and video object in `storage`, narrowed by `relevant`, sorted by key.

    Objects under the `excluded` key prefixes (the run's own output or cache, when they lie
    inside the source) are never samples.
    """
    found = [
        info
        for info in storage.list_objects()
        if is_sample_key(info.key)
        and not is_excluded(info.key, excluded)
        and (relevant is None or relevant.match_file(info.key))
    ]
    return sorted(found, key=lambda info: info.key)


def load_relevant_filenames(storage: Storage, location: str | None) -> pathspec.PathSpec | None:
    """Read the relevant-filenames file: an absolute path, or a key inside the source.

    Raises:
        FileNotFoundError: the file does not exist (a typo must not silently widen the run).
    """
    if location is None:
        return None
    try:
        text = read_file_or_key(storage, location).decode()
    except FileNotFoundError as error:
        raise FileNotFoundError(f"relevant_filenames file {location!r} not found in {storage.uri}") from error
    return parse_relevant_filenames(text)


def discover_source(
    source: str,
    aws_credentials: str | None,
    relevant_filenames: str | None,
    excluded: tuple[str, ...],
    directory: Path,
) -> Listing:
    """List the source's images and videos into a listing file in `directory`.

    Raises:
        ValueError: the source holds no images or videos (after the relevant-filenames filter).
        StorageError: the source cannot be read (missing bucket, denied access, ...).
    """
    storage = open_storage(source, aws_credentials)
    relevant = load_relevant_filenames(storage, relevant_filenames)
    objects = list_samples(storage, relevant, excluded)
    if excluded:
        logger.info("left out of %s: %s (this run's own output and cache)", source, ", ".join(excluded))
    if not objects:
        narrowed = f" matching {relevant_filenames!r}" if relevant_filenames else ""
        extensions = ", ".join(sorted(SAMPLE_EXTENSIONS))
        raise ValueError(f"source {source!r} holds no images or videos{narrowed} (looked for {extensions})")
    logger.info("discovered %d images and videos under %s", len(objects), source)
    return write_listing(source, objects, directory)
