"""Frame sampling from real videos written by PyAV: exact frame indices and timestamps for
every sampling mode, the bad videos of a real upload, and re-decoding selected frames."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.config import ChecksConfig, VideoConfig
from tasks.media.decode import Corrupt
from tasks.media.inspection import ROWS_PER_BATCH, inspect_shard_files
from tasks.media.video import SampledFrame, frames_at, sample_frames
from tasks.storage.local import LocalStorage
from tests.videos import CODECS, KEYFRAME_INTERVAL, picture, truncate, write_audio_only, write_video

FRAMES, RATE = 30, 10


def sampled(path: Path, **options: object) -> list[SampledFrame]:
    frames = list(sample_frames(path, VideoConfig.model_validate(options)))
    assert all(isinstance(f, SampledFrame) for f in frames), frames
    return [f for f in frames if isinstance(f, SampledFrame)]


def reference_decode(path: Path) -> list[av.VideoFrame]:
    """Every frame as plain PyAV decodes it, no threading, no skipping."""
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


@pytest.fixture(scope="module", params=CODECS, ids=lambda c: f"{c[0]}{c[1]}")
def clip(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    codec, suffix = request.param
    path = tmp_path_factory.mktemp("clips") / f"clip{suffix}"
    write_video(path, codec, frames=FRAMES, rate=RATE)
    return path


def test_every_frame_has_its_index_and_timestamp(clip: Path) -> None:
    frames = sampled(clip)
    assert [f.index for f in frames] == list(range(FRAMES))
    start = frames[0].seconds  # MPEG program streams start their clock at 0.5 s or so
    assert start == 0.0 or clip.suffix == ".mpg"
    np.testing.assert_allclose([f.seconds - start for f in frames], np.arange(FRAMES) / RATE, atol=1e-9)
    assert frames[0].rgb.shape == (32, 48, 3)
    # Each frame is its own picture: nearer to the one written at its index than to its neighbour's.
    for f in frames[1:4]:
        error = np.abs(f.rgb.astype(int) - picture(f.index)).mean()
        assert error < np.abs(f.rgb.astype(int) - picture(f.index - 1)).mean()


def test_every_n_frames_and_a_cap_per_video(clip: Path) -> None:
    assert [f.index for f in sampled(clip, every_n_frames=4)] == list(range(0, FRAMES, 4))
    assert [f.index for f in sampled(clip, every_n_frames=4, max_frames_per_video=3)] == [0, 4, 8]


def test_fps_takes_the_first_frame_at_or_after_each_tick(clip: Path) -> None:
    # At 10 frames/s, ticks every 0.25 s land on frames 0, 3 (0.3 s), 5, 8 (0.8 s), ...
    assert [f.index for f in sampled(clip, fps=4)] == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28]
    assert [f.index for f in sampled(clip, fps=RATE)] == list(range(FRAMES))


def test_keyframes_only_yields_exactly_the_keyframes_at_their_index(clip: Path) -> None:
    reference = reference_decode(clip)
    keyframes = sampled(clip, keyframes_only=True)
    expected = [i for i, frame in enumerate(reference) if frame.key_frame]
    assert [f.index for f in keyframes] == expected
    assert expected[:3] == list(range(0, FRAMES, KEYFRAME_INTERVAL))
    assert [f.seconds for f in keyframes] == [reference[i].time for i in expected]
    np.testing.assert_array_equal(keyframes[1].rgb, reference[expected[1]].to_ndarray(format="rgb24"))


def test_keyframe_indices_count_the_b_frames_shown_before_them(tmp_path: Path) -> None:
    """Open GOPs: B-frames that follow a keyframe in the file are shown before it."""
    path = tmp_path / "b-frames.mp4"
    write_video(path, b_frames=True)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    decode_order = [p.pts for p in packets]
    assert decode_order != sorted(decode_order)  # the file really holds reordered frames
    assert [f.index for f in sampled(path, keyframes_only=True)] == [0, 10, 20]


def test_variable_frame_rate_keeps_true_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    write_video(path, durations_ms=(100, 50))
    times = np.cumsum([0] + [100, 50] * (FRAMES // 2))[:FRAMES] / 1000
    np.testing.assert_allclose([f.seconds for f in sampled(path)], times, atol=1e-9)
    # Ticks every 0.2 s: the first frame at or after each (0, 0.25, 0.4, 0.6, 0.85, 1.0, ...).
    expected = [0, 3, 5, 8, 11, 13, 16, 19, 21, 24, 27, 29]
    ticks = np.arange(0, times[-1] + 1e-9, 0.2)
    assert sorted({int(np.argmax(times >= tick - 1e-9)) for tick in ticks}) == expected  # brute force
    assert [f.index for f in sampled(path, fps=5)] == expected


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_videos_come_out_upright(tmp_path: Path, rotation: int) -> None:
    path = tmp_path / f"rotated{rotation}.mp4"
    upright = write_video(path, frames=3, rotation=rotation)[0].astype(int)
    frame = sampled(path)[0].rgb.astype(int)
    assert frame.shape == upright.shape
    assert np.abs(frame - upright).mean() < np.abs(frame - np.rot90(upright, 2)).mean() / 2


def test_a_truncated_video_keeps_the_frames_before_the_cut(tmp_path: Path) -> None:
    intact = tmp_path / "intact.mkv"
    write_video(intact)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(intact.read_bytes())
    truncate(cut, 0.5)
    results = list(sample_frames(cut, VideoConfig()))
    *frames, last = results
    assert isinstance(last, Corrupt)
    assert all(isinstance(f, SampledFrame) for f in frames)
    kept = [f for f in frames if isinstance(f, SampledFrame)]
    assert 5 <= len(kept) < FRAMES
    assert [f.index for f in kept] == list(range(len(kept)))
    for good, frame in zip(sampled(intact), kept, strict=False):
        np.testing.assert_array_equal(frame.rgb, good.rgb)
    assert last.reason.startswith(f"video: decoding stopped at frame {len(kept)} (t=")
    assert "truncated" in last.reason


def test_bad_videos_are_recorded_with_their_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video at all")
    write_audio_only(tmp_path / "audio.mp4")
    write_video(tmp_path / "cut.mp4")
    truncate(tmp_path / "cut.mp4", 0.5)  # an MP4 whose index (moov) is at its end
    reasons = {}
    for name in ("empty.mp4", "text.mp4", "audio.mp4", "cut.mp4"):
        results = list(sample_frames(tmp_path / name, VideoConfig()))
        assert len(results) == 1 and isinstance(results[0], Corrupt), results
        reasons[name] = results[0].reason
    assert reasons["text.mp4"] == "video: cannot open: Invalid data found when processing input"
    assert reasons["empty.mp4"].startswith("video: cannot open: ")
    assert reasons["audio.mp4"] == "video: no video stream"
    assert reasons["cut.mp4"].startswith("video: cannot open: ")


def test_stopping_early_with_ffmpeg_threads_returns_at_once(tmp_path: Path) -> None:
    """Frame threading is on; closing the generator after two frames must end the
    decoder's threads instead of hanging (a known PyAV failure when stopped early)."""
    path = tmp_path / "long.mp4"
    write_video(path, frames=120, size=(320, 240))
    done = threading.Event()

    def stop_early() -> None:
        frames = sample_frames(path, VideoConfig())
        next(frames), next(frames)
        frames.close()
        done.set()

    worker = threading.Thread(target=stop_early, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert done.is_set()
    assert [f.index for f in sampled(path, max_frames_per_video=2)] == [0, 1]


EXPORT_CASES = [
    *((codec, suffix, {}) for codec, suffix in CODECS),
    ("libx264", ".mp4", {"b_frames": True}),
    ("libx264", ".mkv", {"durations_ms": (40, 120, 80)}),  # variable frame rate
]


@pytest.mark.parametrize(("codec", "suffix", "options"), EXPORT_CASES)
@pytest.mark.parametrize("keyframes_only", [False, True])
def test_every_selected_frame_is_exported_with_the_pixels_it_was_embedded_from(
    tmp_path: Path, codec: str, suffix: str, options: dict[str, Any], keyframes_only: bool
) -> None:
    """Seeking lost frames and found wrong ones (MPEG-2: 12 of 60 written, 5 of them wrong):
    the export decodes each video once, counting frames as sampling does."""
    path = tmp_path / f"clip{suffix}"
    write_video(path, codec=codec, frames=40, **options)
    every = {f.index: f for f in sampled(path, keyframes_only=keyframes_only)}
    wanted = set(sorted(every)[1::2] or every)  # every other sampled frame, the last included
    found = dict(frames_at(path, wanted, keyframes_only))
    assert sorted(found) == sorted(wanted)
    for index, rgb in found.items():
        np.testing.assert_array_equal(rgb, every[index].rgb)


def test_a_long_video_is_written_to_the_samples_table_a_batch_at_a_time(tmp_path: Path) -> None:
    """Rows used to pile up per frame until the shard was written: 100 MB for an hour at 30 fps."""
    frames = ROWS_PER_BATCH + 100
    write_video(tmp_path / "src" / "long.mp4", frames=frames, rate=30, size=(16, 16))
    storage = LocalStorage(tmp_path / "src")
    (tmp_path / "out").mkdir()
    ok, corrupt = inspect_shard_files(
        list(storage.list_objects()), 0, storage, 16, ChecksConfig(), VideoConfig(), tmp_path / "out"
    )
    table = pq.ParquetFile(tmp_path / "out" / "samples.parquet")
    assert (ok, corrupt, table.metadata.num_rows) == (frames, 0, frames)
    assert table.num_row_groups == 2  # one batch of ROWS_PER_BATCH rows, then the rest
