from pathlib import Path, PurePosixPath

import pytest

from tasks.ingest.listing import discover_source
from tasks.records.keys import suffix
from tasks.records.shards import Shard, read_listing, read_shard_manifest, write_manifests
from tasks.storage.atomic import written_atomically
from tasks.storage.interface import contained_key, safe_key
from tasks.storage.local import LocalStorage
from tasks.storage.shard_store import ShardStore


def touch(root: Path, *keys: str) -> None:
    for key in keys:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x" * len(key))


def keys_of(root: Path, tmp_path: Path, relevant: str | None = None) -> list[str]:
    listing = discover_source(str(root), None, relevant, (), tmp_path / "listings")
    return [info.key for info in read_listing(listing)]


def shards_of(root: Path, tmp_path: Path, shard_size: int) -> list[Shard]:
    objects = read_listing(discover_source(str(root), None, None, (), tmp_path / "listings"))
    return write_manifests(objects, shard_size, ShardStore(root=str(tmp_path / "shards")))


def test_images_and_videos_of_every_extension_in_any_case_are_found(tmp_path: Path) -> None:
    root = tmp_path / "src"
    images = ["a.jpg", "b.JPEG", "c.png", "d.bmp", "e.gif", "f.tif", "g.TIFF", "h.webp", "sub/deep/i.Jpg"]
    videos = ["v/a.mp4", "v/b.M4V", "v/c.mov", "v/d.avi", "v/e.mkv", "v/f.webm", "v/g.mpg", "v/h.MPEG"]
    touch(root, *images, *videos, "notes.txt", "model.onnx", "sound.mp3", "jpg", "mp4")
    assert keys_of(root, tmp_path) == sorted(images + videos)


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
    with pytest.raises(ValueError, match=r"source '.*src' holds no images or videos"):
        keys_of(tmp_path / "src", tmp_path)


def test_shards_keep_their_fingerprint_until_their_files_change(tmp_path: Path) -> None:
    root = tmp_path / "src"
    touch(root, *(f"{i:03d}.jpg" for i in range(25)))
    first = shards_of(root, tmp_path, 10)
    assert [s.count for s in first] == [10, 10, 5]
    assert [
        info.key for info in read_shard_manifest(first[2], ShardStore(root=str(tmp_path / "shards")))
    ] == [f"{i:03d}.jpg" for i in range(20, 25)]
    again = shards_of(root, tmp_path, 10)
    assert [s.fingerprint for s in again] == [s.fingerprint for s in first]
    (root / "024.jpg").write_bytes(b"changed content, new size")
    changed = shards_of(root, tmp_path, 10)
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


def test_contained_keys_stay_inside_and_stay_distinct(tmp_path: Path) -> None:
    keys = [
        "a/../b.jpg",
        "b.jpg",
        "./x.jpg",
        "x.jpg",
        "/lead.jpg",
        "a//b.jpg",
        "a%2E%2E/b.jpg",
        "..",
        "c\\d.jpg",
    ]
    paths = {(tmp_path / contained_key(key)).resolve() for key in keys}
    assert len(paths) == len(keys)
    assert all(path.is_relative_to(tmp_path) for path in paths)
    assert contained_key("cats/001.jpg") == "cats/001.jpg"


def test_the_runs_own_output_inside_the_source_is_left_out(tmp_path: Path) -> None:
    root = tmp_path / "src"
    touch(root, "a.jpg", "cam/b.jpg", "curated/selected/a.jpg", "curated/runs/r1/selected_frames/v-0001.png")
    touch(root, "curated-notes/c.jpg")  # beside the output, not in it: a sample
    listing = discover_source(str(root), None, None, ("curated",), tmp_path / "listings")
    assert [info.key for info in read_listing(listing)] == ["a.jpg", "cam/b.jpg", "curated-notes/c.jpg"]


def write_half_then_fail(path: Path) -> None:
    with written_atomically(path) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("killed mid-write")


def test_two_writers_of_one_cached_file_never_write_into_each_other(tmp_path: Path) -> None:
    """Two runs on one cache compute the same content-addressed name (cache/kept/<digest>.parquet):
    each writes a file of its own and renames it, so neither ever reads half of the other's."""
    path = tmp_path / "kept" / "same-digest.parquet"
    with written_atomically(path) as first, written_atomically(path) as second:
        assert first != second and first.parent == second.parent == path.parent
        first.write_bytes(b"first run's rows")
        second.write_bytes(b"second run's rows")
        assert not path.exists()  # nobody sees a file before it is whole
    assert path.read_bytes() == b"first run's rows"  # the last rename wins, whole
    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_half_then_fail(path)
    assert path.read_bytes() == b"first run's rows"
    assert sorted(p.name for p in path.parent.iterdir()) == ["same-digest.parquet"]


def test_symbolic_links_are_not_followed_to_files_or_folders(tmp_path: Path) -> None:
    root, outside = tmp_path / "src", tmp_path / "elsewhere"
    touch(root, "real.jpg", "cam/b.jpg")
    touch(outside, "secret.jpg", "more/c.jpg")
    (root / "outside.jpg").symlink_to(outside / "secret.jpg")
    (root / "inside.jpg").symlink_to(root / "real.jpg")
    (root / "linked-folder").symlink_to(outside / "more", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert keys_of(root, tmp_path) == ["cam/b.jpg", "real.jpg"]


@pytest.mark.parametrize(
    "key",
    ["a.mp4", "..mp4", "...MP4", ".mp4", "a/b.tar.gz", "a.b/c", "a.", "x/.hidden", ".x.mp4", "d.v/c.MOV"],
)
def test_a_keys_extension_is_pathlibs_suffix(key: str) -> None:
    assert suffix(key) == PurePosixPath(key).suffix.lower()
