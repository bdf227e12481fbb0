"""Video frame sampling: full decode against keyframes-only, and keyframes-only against
seeking to as many random frames.

    python -m benchmarks.video [--seconds 60] [--rate 30] [--keyframe-seconds 2]

Makes its own 1080p H.264 clip (a moving texture, a keyframe every --keyframe-seconds),
then times winnow's sampler (tasks/media/video.py, RGB conversion included) decoding every frame
and only the keyframes (the decoder skips the rest), and a random-access reader seeking to as
many random frames (each seek decodes from the keyframe before its frame): the baseline a
sampler that seeks would pay.
Prints a JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from tasks.config import VideoConfig
from tasks.media.video import SampledFrame, open_video, sample_frames, upright

WIDTH, HEIGHT = 1920, 1080


def make_clip(path: Path, seconds: int, rate: int, keyframe_seconds: int) -> int:
    """Write the clip; returns its frame count."""
    frames = seconds * rate
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(x // 4) % 256, (y // 4) % 256, ((x + y) // 8) % 256], axis=-1).astype(np.uint8)
    keyint = keyframe_seconds * rate
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264",
            rate=rate,
            options={"preset": "ultrafast", "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"},
        )
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 8 * index, axis=1), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return frames


def timed_sampling(path: Path, config: VideoConfig) -> tuple[list[tuple[int, float]], float]:
    """(index, seconds) of each sampled frame (its pixels dropped at once), and the time taken."""
    started = time.perf_counter()
    frames = [(f.index, f.seconds) for f in sample_frames(path, config) if isinstance(f, SampledFrame)]
    return frames, time.perf_counter() - started


def seek_to(path: Path, seconds: float) -> np.ndarray | None:
    """The baseline random-access read: seek to the keyframe before `seconds`, decode up to it."""
    opened = open_video(path)
    if not isinstance(opened, tuple):
        return None
    container, stream = opened
    target = round(seconds / float(stream.time_base)) if stream.time_base else 0
    with container:
        container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts >= target:
                return upright(frame) if frame.pts == target else None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="clip length")
    parser.add_argument("--rate", type=int, default=30, help="frames per second")
    parser.add_argument("--keyframe-seconds", type=int, default=2, help="seconds between keyframes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        started = time.perf_counter()
        count = make_clip(path, args.seconds, args.rate, args.keyframe_seconds)
        made = time.perf_counter() - started
        print(f"made a {args.seconds} s 1080p H.264 clip ({count} frames) in {made:.1f} s")
        every, full_seconds = timed_sampling(path, VideoConfig())
        keyframes, key_seconds = timed_sampling(path, VideoConfig(keyframes_only=True))
        assert len(every) == count, (len(every), count)
        expected_keys = list(range(0, count, args.keyframe_seconds * args.rate))
        assert [index for index, _ in keyframes] == expected_keys, keyframes
        rng = np.random.default_rng(0)
        targets = rng.choice(count, size=len(keyframes), replace=False)
        started = time.perf_counter()
        found = 0
        for index in targets:  # one seek a frame, in random order, as a random-access reader does
            found += seek_to(path, every[index][1]) is not None
        seek_seconds = time.perf_counter() - started
        assert found == len(targets)
    full_fps, key_fps = count / full_seconds, len(keyframes) / key_seconds
    seek_fps = len(targets) / seek_seconds
    print(f"full decode: {count} frames in {full_seconds:.2f} s, {full_fps:.1f} frames/s")
    print(
        f"keyframes only: {len(keyframes)} frames in {key_seconds:.2f} s, {key_fps:.1f} frames/s, "
        f"{full_seconds / key_seconds:.1f}x faster than the full decode that would also find them"
    )
    print(f"seeking to {len(targets)} random frames: {seek_seconds:.2f} s, {seek_fps:.1f} frames/s")
    print(
        json.dumps(
            {
                "frames": count,
                "keyframes": len(keyframes),
                "full_decode_fps": round(full_fps, 2),
                "keyframes_fps": round(key_fps, 2),
                # How many times faster keyframes-only gets the keyframes than a full decode.
                "ratio": round(full_seconds / key_seconds, 2),
                "random_seek_fps": round(seek_fps, 2),
                "keyframes_vs_seek_ratio": round(key_fps / seek_fps, 2),
                "full_decode_s": round(full_seconds, 3),
                "keyframes_s": round(key_seconds, 3),
                "random_seek_s": round(seek_seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
