from pathlib import Path

import pytest

from tasks.discover import discover_source, read_manifest
from tasks.storage import LocalStorage, safe_key


def touch(root: Path, *keys: str) -> None:
    for key in keys:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x" * len(key))


def keys_of(root: Path, tmp_path: Path, relevant: str | None = None, shard_size: int = 100) -> list[str]:
    discovery = discover_source(str(root), relevant, shard_size, tmp_path / "manifests")
    return [info.key for shard in discovery.shards for info in read_manifest(shard)]


def test_images_of_every_extension_in_any_case_are_found(tmp_path: Path) -> None:
    root = tmp_path / "src"
    images = ["a.jpg", "b.JPEG", "c.png", "d.bmp", "e.gif", "f.tif", "g.TIFF", "h.webp", "sub/deep/i.Jpg"]
    touch(root, *images, "notes.txt", "model.onnx", "video.mp4", "jpg")
    assert keys_of(root, tmp_path) == sorted(images)


def test_relevant_filenames_narrow_with_gitignore_patterns(tmp_path: Path) -> None:
    root = tmp_path / "src"
    touch(root, "cam1/a.jpg", "cam1/b.jpg", "cam2/a.jpg", "cam2/skip/b.jpg", "top.png")
    (root / "relevant.txt").write_text("# only camera folders\ncam*/**\n!cam2/skip/\n")
    assert keys_of(root, tmp_path, "relevant.txt") == ["cam1/a.jpg", "cam1/b.jpg", "cam2/a.jpg"]
    outside = tmp_path / "patterns.txt"
    outside.write_text("*.png\n")
    assert keys_of(root, tmp_path, str(outside)) == ["top.png"]


def test_a_missing_relevant_filenames_file_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "src", "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"relevant_filenames file 'nope\.txt' not found"):
        keys_of(tmp_path / "src", tmp_path, "nope.txt")


def test_a_source_without_images_fails_naming_it(tmp_path: Path) -> None:
    touch(tmp_path / "src", "readme.md")
    with pytest.raises(ValueError, match=r"source '.*src' holds no images"):
        keys_of(tmp_path / "src", tmp_path)


def test_shards_keep_their_fingerprint_until_their_files_change(tmp_path: Path) -> None:
    root = tmp_path / "src"
    touch(root, *(f"{i:03d}.jpg" for i in range(25)))
    first = discover_source(str(root), None, 10, tmp_path / "m").shards
    assert [s.count for s in first] == [10, 10, 5]
    again = discover_source(str(root), None, 10, tmp_path / "m").shards
    assert [s.fingerprint for s in again] == [s.fingerprint for s in first]
    (root / "024.jpg").write_bytes(b"changed content, new size")
    changed = discover_source(str(root), None, 10, tmp_path / "m").shards
    assert [s.fingerprint == f.fingerprint for s, f in zip(changed, first, strict=True)] == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize("key", ["../escape.jpg", "/etc/passwd", "a/../../b.jpg", "", "a\\..\\b"])
def test_keys_never_leave_the_storage_root(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsafe storage key"):
        safe_key(key)
    with pytest.raises(ValueError, match="unsafe storage key"):
        LocalStorage(tmp_path).write_bytes(key, b"x")
