"""Content fingerprints and the cache keys of winnow's Prefect tasks.

Prefect's built-in policies hash a Path as its string and TASK_SOURCE covers only a task's
own body. winnow keys every cached task on (stage, code version, cache instance, inputs),
where the inputs are small records whose fields already hold content fingerprints and the
code version hashes every source file in models/ and tasks/.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydantic_core

PACKAGE_ROOTS = ("models", "tasks")
CACHE_ID_FILE = "cache-id"


def digest(*parts: str | bytes) -> str:
    """A short, stable hex digest of the parts, in order."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of the file's content."""
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """Digest of every .py file under models/ and tasks/: any code change invalidates caches."""
    repo = Path(__file__).resolve().parent.parent
    files = sorted(p for root in PACKAGE_ROOTS for p in (repo / root).rglob("*.py"))
    return digest(*(f"{p.relative_to(repo)}\n".encode() + p.read_bytes() for p in files))


def cache_instance(cache_dir: Path) -> str:
    """The random id of a cache folder, made when the folder is first used.

    Prefect keeps cached results in its own storage; the id ties them to the files in this
    folder, so deleting the folder invalidates every result that points into it.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    marker = cache_dir / CACHE_ID_FILE
    if not marker.exists():
        partial = marker.with_suffix(f".{uuid.uuid4().hex}")
        partial.write_text(uuid.uuid4().hex)
        partial.replace(marker)
    return marker.read_text().strip()


def stage_cache_key(stage: str, ignored: tuple[str, ...] = ()) -> Callable[[Any, dict[str, Any]], str]:
    """A Prefect `cache_key_fn` for a task whose parameters include `cache_dir` or `shards`.

    `shards` (a ShardStore) is for the per-shard tasks, whose results live there; the
    `ignored` parameters say how to compute, never what (a thread count), so they are no
    part of the key.
    """

    def key(_context: Any, parameters: dict[str, Any]) -> str:
        keyed = {name: value for name, value in parameters.items() if name not in ignored}
        inputs = pydantic_core.to_json(keyed, fallback=str)
        shards = parameters.get("shards")
        instance = shards.instance() if shards is not None else cache_instance(Path(parameters["cache_dir"]))
        return f"winnow-{stage}-{digest(code_version(), instance, inputs)}"

    return key
