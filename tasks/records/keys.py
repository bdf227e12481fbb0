"""Sample keys and ids: which files are samples, and a video frame's id."""

from __future__ import annotations

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})
SAMPLE_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def suffix(key: str) -> str:
    """The key's extension in lower case, as PurePosixPath(key).suffix has it ('' for none).

    Written out because it runs for every listed file, in the inspecting process: at a
    tenth of pathlib's cost.
    """
    name = key.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def is_sample_key(key: str) -> bool:
    """An image or a video, by its extension in any letter case."""
    return suffix(key) in SAMPLE_EXTENSIONS


FRAME_SEPARATOR = "#frame="


def is_video_key(key: str) -> bool:
    """A video, by its extension in any letter case."""
    return suffix(key) in VIDEO_EXTENSIONS


def frame_id(key: str, index: int) -> str:
    """The sample id of a frame: `clips/a.mp4#frame=000120`."""
    return f"{key}{FRAME_SEPARATOR}{index:06d}"


def sample_key(sample_id: str) -> str:
    """The file key a sample id belongs to: the id itself, or a frame's video."""
    return sample_id.split(FRAME_SEPARATOR, 1)[0]
