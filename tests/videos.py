"""Test videos, written with PyAV: known frame counts, rates, keyframes and timestamps."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# (codec, file suffix): the containers and codecs a camera or car upload holds.
CODECS = (
    ("libx264", ".mp4"),
    ("libx264", ".mkv"),
    ("mpeg4", ".avi"),
    ("mpeg4", ".mov"),
    ("libvpx-vp9", ".webm"),
    ("mpeg2video", ".mpg"),
)
KEYFRAME_INTERVAL = 10


def picture(index: int, width: int = 48, height: int = 32) -> np.ndarray:
    """A textured frame that differs from every other index. Shape: -> (H, W, 3) uint8"""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [(x * 5 + index * 9) % 256, (y * 7 + index * 23) % 256, (x * y + index * 41) % 256], axis=-1
    )
    block = rng.integers(0, 256, 3)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    rgb[top : top + height // 3, left : left + width // 3] = block
    return rgb.astype(np.uint8)


def write_video(
    path: Path,
    codec: str = "libx264",
    frames: int = 30,
    rate: int = 10,
    size: tuple[int, int] = (48, 32),
    durations_ms: tuple[int, ...] | None = None,
    rotation: int | None = None,
    b_frames: bool = False,
) -> list[np.ndarray]:
    """Write `frames` pictures at `rate` per second, a keyframe every KEYFRAME_INTERVAL;
    with `durations_ms`, frame i lasts durations_ms[i % len] (variable frame rate). The
    pictures are stored turned clockwise by `rotation` degrees, with display metadata that
    turns them back. Returns the upright pictures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    pictures = [picture(i, width, height) for i in range(frames)]
    options = {}
    if codec == "libx264":
        gop = f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}:scenecut=0"
        options["x264-params"] = gop + (":bframes=2:open-gop=1" if b_frames else ":bframes=0")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        turns = (rotation or 0) // 90
        stream.width, stream.height = (height, width) if turns % 2 else (width, height)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = KEYFRAME_INTERVAL
        if rotation is not None:
            stream.set_display_rotation(rotation)
        time_base = Fraction(1, 1000) if durations_ms else Fraction(1, rate)
        stream.codec_context.time_base = time_base
        pts = 0
        for index, rgb in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(rgb, -turns)), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            pts += durations_ms[index % len(durations_ms)] if durations_ms else 1
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return pictures


def write_audio_only(path: Path) -> None:
    """A second of a tone in an MP4 with no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        samples = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 0.3).astype(np.float32)
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, len(samples), frame_size):
            chunk = samples[None, start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def truncate(path: Path, share: float) -> None:
    """Keep the first `share` of the file's bytes, as an interrupted upload does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
