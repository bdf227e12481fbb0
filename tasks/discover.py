"""Discover: list the source, keep the images, cut them into shards.

A shard's manifest (keys, sizes, versions) is a small JSON file; its fingerprint is the
digest of that content, so a shard whose files did not change keeps its fingerprint and
every cached result computed from it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath

import pathspec
from prefect import task
from pydantic import BaseModel

from tasks.fingerprint import digest
from tasks.retry import is_transient_failure
from tasks.storage import ObjectInfo, Storage, open_storage

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class Shard(BaseModel, frozen=True):
    """A slice of the source: where its manifest is and what it holds."""

    index: int
    fingerprint: str
    manifest: str
    count: int


class Discovery(BaseModel, frozen=True):
    source: str
    discovered: int
    shards: list[Shard]


def is_image_key(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in IMAGE_EXTENSIONS


def parse_relevant_filenames(text: str) -> pathspec.PathSpec:
    """gitignore-style patterns; a key is relevant when the last pattern it matches is not
    negated ('!'). Blank lines and '#' comments are ignored."""
    return pathspec.PathSpec.from_lines("gitwildmatch", text.splitlines())


def list_images(storage: Storage, relevant: pathspec.PathSpec | None) -> list[ObjectInfo]:
    """Every image object in `storage`, narrowed by `relevant`, sorted by key."""
    found = [
        info
        for info in storage.list_objects()
        if is_image_key(info.key) and (relevant is None or relevant.match_file(info.key))
    ]
    return sorted(found, key=lambda info: info.key)


def write_manifests(objects: list[ObjectInfo], shard_size: int, manifest_dir: Path) -> list[Shard]:
    """Cut `objects` into shards of at most `shard_size` and write one manifest each."""
    manifest_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for index, start in enumerate(range(0, len(objects), shard_size)):
        rows = [[o.key, o.size, o.version] for o in objects[start : start + shard_size]]
        content = json.dumps(rows, separators=(",", ":"))
        fingerprint = digest(content)
        path = manifest_dir / f"{fingerprint}.json"
        if not path.exists():
            partial = path.with_suffix(".partial")
            partial.write_text(content)
            partial.replace(path)
        shards.append(Shard(index=index, fingerprint=fingerprint, manifest=str(path), count=len(rows)))
    return shards


def read_manifest(shard: Shard) -> list[ObjectInfo]:
    rows = json.loads(Path(shard.manifest).read_text())
    return [ObjectInfo(key=key, size=size, version=version) for key, size, version in rows]


def load_relevant_filenames(storage: Storage, location: str | None) -> pathspec.PathSpec | None:
    """Read the relevant-filenames file: an absolute path, or a key inside the source.

    Raises:
        FileNotFoundError: the file does not exist (a typo must not silently widen the run).
    """
    if location is None:
        return None
    path = Path(location).expanduser()
    try:
        text = path.read_text() if path.is_absolute() else storage.read_bytes(location).decode()
    except FileNotFoundError as error:
        raise FileNotFoundError(f"relevant_filenames file {location!r} not found in {storage.uri}") from error
    return parse_relevant_filenames(text)


def discover_source(
    source: str, relevant_filenames: str | None, shard_size: int, manifest_dir: Path
) -> Discovery:
    """List the source and write shard manifests.

    Raises:
        ValueError: the source holds no images (after the relevant-filenames filter).
    """
    storage = open_storage(source)
    relevant = load_relevant_filenames(storage, relevant_filenames)
    objects = list_images(storage, relevant)
    if not objects:
        narrowed = f" matching {relevant_filenames!r}" if relevant_filenames else ""
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ValueError(f"source {source!r} holds no images{narrowed} (looked for {extensions})")
    shards = write_manifests(objects, shard_size, manifest_dir)
    logger.info("discovered %d images in %d shards under %s", len(objects), len(shards), source)
    return Discovery(source=source, discovered=len(objects), shards=shards)


# Listing is I/O: retried. Not cached: it is how changes are noticed.
@task(
    name="discover",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=is_transient_failure,
)
def discover(source: str, relevant_filenames: str | None, shard_size: int, cache_dir: Path) -> Discovery:
    return discover_source(source, relevant_filenames, shard_size, cache_dir / "manifests")
