"""Write the selected video frames as image files.

The uint8 cache holds frames at model resolution only, so each selected frame is decoded
again from its video at full resolution, by seeking to it: one video open at a time, one
frame in memory at a time.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.config import VideoConfig
from tasks.media.video import frames_at
from tasks.storage.interface import MissingObjectError, ObjectInfo, Storage, contained_key

logger = logging.getLogger(__name__)

FRAMES_FOLDER = "selected_frames"

SUFFIXES = {"png": "png", "jpeg": "jpg"}

JPEG_QUALITY = 95


def frame_file_name(key: str, index: int, frame_format: str) -> str:
    """A selected frame's file name: the video's key made safe as a path, then the frame's index.

    `clips/a.mp4`, 120 -> `clips/a.mp4__frame=000120.png`; the key is made safe by
    contained_key: never outside the folder.
    """
    return f"{contained_key(key)}__frame={index:06d}.{SUFFIXES[frame_format]}"


def encode_frame(rgb: np.ndarray, frame_format: str) -> bytes:
    """Encode a frame as PNG or JPEG.

    Shape: (H, W, 3) uint8 -> PNG (lossless) or JPEG bytes
    """
    buffer = io.BytesIO()
    if frame_format == "png":
        Image.fromarray(rgb).save(buffer, "PNG")
    else:
        Image.fromarray(rgb).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_selected_frames(
    source: Storage,
    output: Storage,
    prefix: str,
    frames: list[tuple[str, int]],
    videos: dict[str, ObjectInfo],
    video: VideoConfig,
    scratch: Path,
) -> int:
    """Write each selected frame to `<prefix>/selected_frames/` in the output.

    A frame is (video key, frame index). Each video is decoded once, counting frames as its
    sampling did (video.keyframes_only). A video that vanished or changed since it was
    inspected is logged and skipped. Returns how many files were written.
    """
    by_video: dict[str, set[int]] = defaultdict(set)
    for key, index in frames:
        by_video[key].add(index)
    scratch.mkdir(parents=True, exist_ok=True)
    written = 0
    for key, wanted in sorted(by_video.items()):
        try:
            with source.local_file(videos[key], scratch) as path:
                for index, rgb in frames_at(path, wanted, video.keyframes_only):
                    name = frame_file_name(key, index, video.frame_format)
                    output.write_bytes(
                        f"{prefix}/{FRAMES_FOLDER}/{name}", encode_frame(rgb, video.frame_format)
                    )
                    written += 1
        except MissingObjectError as error:
            logger.warning("selected frames of %s not written: %s", key, error)
    if written < len(frames):
        logger.warning("wrote %d of %d selected frames: the others were not found", written, len(frames))
    return written
