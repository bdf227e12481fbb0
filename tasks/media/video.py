"""Video: sample frames from a video file with PyAV, one at a time, or say why it cannot be.

Frames stream: `sample_frames` is a generator that holds one decoded frame at a time, so
memory does not grow with the video's length. A bad video is a value (`Corrupt`, yielded
last, after the frames decoded before the break), never an exception.

A frame's index is its position in presentation order (the order the decoder returns
frames, 0-based); its time is pts * time_base in seconds. Keyframes-only sampling never
decodes the other frames, so it counts packets instead: a keyframe's index is the number
of the stream's packets (one a frame) that are shown before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.container
import av.video.stream
import numpy as np

from tasks.config import VideoConfig
from tasks.media.decode import Corrupt

# PyAV raises FFmpeg's errors as av.FFmpegError (a ValueError, OSError, ... subclass each).
DECODE_ERRORS = (av.FFmpegError, ValueError, OSError, EOFError)

# A video whose packets end this much earlier than its container says is cut short.
TRUNCATION_TOLERANCE_FRAMES = 2

FALLBACK_FRAME_SECONDS = 0.25  # when the stream states no frame rate


@dataclass(frozen=True)
class SampledFrame:
    """One frame, upright (the stream's display rotation applied).

    Shape: rgb (H, W, 3) uint8
    """

    index: int
    seconds: float
    rgb: np.ndarray


@dataclass
class _Progress:
    """How far decoding got: the next frame's index and the end of the last packet read."""

    next_index: int = 0
    seconds: float = 0.0
    pending_keys: dict[int, list[int]] = field(default_factory=dict)


def describe(error: Exception) -> str:
    """FFmpeg's words for an error, without the local file name PyAV appends."""
    return getattr(error, "strerror", None) or str(error)


def upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB, turned by its display rotation.

    `frame.rotation`: degrees counterclockwise, as FFmpeg's own players apply it.
    Shape: -> (H, W, 3) uint8
    """
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def open_video(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream] | Corrupt:
    """The opened container and its first video stream, with FFmpeg's threads on.

    AUTO (frame and slice) threading is safe here because every container is closed when
    sampling ends, early or not (the generator's `with`), and PyAV's FFmpeg log callback
    stays off: the hang PyAV reports for frame threading stopped early is that callback
    waiting for the GIL while the interpreter tears the decoder down.
    """
    try:
        container = av.open(str(path), mode="r")
    except DECODE_ERRORS as error:
        return Corrupt(f"video: cannot open: {describe(error)}")
    streams = container.streams.video
    if not streams:
        container.close()
        return Corrupt("video: no video stream")
    stream = streams[0]
    if stream.codec_context is None:  # codec parameters unknown: decoding would crash FFmpeg
        container.close()
        return Corrupt("video: no decodable video stream (codec parameters unknown)")
    stream.thread_type = "AUTO"
    return container, stream


def _packet_time(packet: av.Packet) -> int | None:
    return packet.pts if packet.pts is not None else packet.dts


def indexed_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    keyframes_only: bool,
    progress: _Progress,
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Every frame (or every keyframe) with its index, in presentation order.

    Keyframes: the decoder skips the others (skip_frame NONKEY), so a keyframe's index is
    the packets demuxed before it plus the later ones shown before it (an open GOP's leading
    B-frames). A keyframe is yielded once the next key packet (or the end) is read, when
    both counts are final.
    """
    time_base = float(stream.time_base or 0)
    if keyframes_only:
        stream.codec_context.skip_frame = "NONKEY"
    ready: list[av.VideoFrame] = []
    packets = 0
    for packet in container.demux(stream):
        pts = _packet_time(packet)
        if pts is not None and packet.size:
            progress.seconds = max(progress.seconds, (pts + (packet.duration or 0)) * time_base)
        if keyframes_only and packet.size and pts is not None:
            if packet.is_keyframe:
                yield from _release(ready, progress)
                progress.pending_keys[pts] = [packets, 0]
            else:
                for key_pts, counts in progress.pending_keys.items():
                    counts[1] += pts < key_pts
            packets += 1
            progress.next_index = packets
        for frame in packet.decode():
            if keyframes_only:
                if frame.key_frame:  # some decoders (VP9) ignore skip_frame
                    ready.append(frame)
                continue
            yield progress.next_index, frame
            progress.next_index += 1
    yield from _release(ready, progress)


def _release(ready: list[av.VideoFrame], progress: _Progress) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield the decoded keyframes whose index is final, and forget their packets."""
    while ready:
        frame = ready.pop(0)
        counts = progress.pending_keys.pop(frame.pts, None) if frame.pts is not None else None
        before, leading = counts or [progress.next_index, 0]
        yield before + leading, frame


def stated_end(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """Where the container says the video stream ends, in seconds (None if it does not say)."""
    if stream.duration and stream.time_base:
        return float((stream.start_time or 0) + stream.duration) * float(stream.time_base)
    if container.duration:
        return ((container.start_time or 0) + container.duration) / av.time_base
    return None


def sample_frames(path: Path, config: VideoConfig) -> Iterator[SampledFrame | Corrupt]:
    """The sampled frames of the video at `path`, upright, one at a time; then maybe a `Corrupt`.

    The `Corrupt` comes if the video cannot be opened, breaks midway, or ends before its
    stated duration.
    """
    opened = open_video(path)
    if isinstance(opened, Corrupt):
        yield opened
        return
    container, stream = opened
    progress = _Progress()
    sampled = 0
    every = config.every_n_frames or 1
    first_seconds: float | None = None
    next_due = 0.0  # fps: seconds after the first frame at which the next sample is due
    with container:
        try:
            for index, frame in indexed_frames(container, stream, config.keyframes_only, progress):
                seconds = float(frame.time or 0.0)
                if config.fps is not None:
                    first_seconds = seconds if first_seconds is None else first_seconds
                    elapsed = seconds - first_seconds
                    if elapsed < next_due - 1e-9:
                        continue
                    next_due = (math.floor(elapsed * config.fps + 1e-9) + 1) / config.fps
                elif index % every:
                    continue
                sampled += 1
                yield SampledFrame(index=index, seconds=seconds, rgb=upright(frame))
                if sampled == config.max_frames_per_video:
                    return  # closes the container: FFmpeg's threads end with it
        except DECODE_ERRORS as error:
            yield Corrupt(
                f"video: decoding stopped at frame {progress.next_index} (t={progress.seconds:.2f} s): "
                f"{describe(error)}"
            )
            return
        end = stated_end(container, stream)
        rate = float(stream.average_rate or 0)
        tolerance = TRUNCATION_TOLERANCE_FRAMES / rate if rate else FALLBACK_FRAME_SECONDS
        if progress.next_index == 0:
            yield Corrupt("video: no frames could be decoded")
        elif end is not None and progress.seconds < end - tolerance:
            yield Corrupt(
                f"video: decoding stopped at frame {progress.next_index} (t={progress.seconds:.2f} s), "
                f"before the {end:.2f} s its container states: the file is truncated or broken"
            )


def frames_at(path: Path, indices: set[int], keyframes_only: bool) -> Iterator[tuple[int, np.ndarray]]:
    """The frames at `indices`, at full resolution and upright, decoding the video once in order.

    Frames are counted as sampling counts them (indexed_frames, with the same
    `keyframes_only`), so each is exactly the frame that was embedded. Seeking is never
    used: MPEG-2 and B-frame streams answer a seek with a neighbouring frame, or none. A
    frame not found (the video changed, or breaks before it) is left out.
    Shape: -> (index, (H, W, 3) uint8)
    """
    opened = open_video(path)
    if isinstance(opened, Corrupt) or not indices:
        return
    container, stream = opened
    last = max(indices)
    with container:
        try:
            for index, frame in indexed_frames(container, stream, keyframes_only, _Progress()):
                if index in indices:
                    yield index, upright(frame)
                if index >= last:
                    return  # closes the container: the rest of the video is not decoded
        except DECODE_ERRORS:
            return
