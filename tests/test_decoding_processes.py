"""The local engine's decoding processes: the same rows and pixels as the threads, and a
worker killed mid-shard loses nothing."""

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tasks.config import ChecksConfig, VideoConfig
from tasks.media.examine import PROCESS_PIXELS, fits_a_process
from tasks.media.inspection import inspect_shard_files
from tasks.media.processes import decoding_in_processes
from tasks.records.samples import IMAGES_FILE, SAMPLES_FILE
from tasks.storage.local import LocalStorage
from tests.images import jpeg_bytes, scene, write_scene_crops
from tests.pids import all_end


def inspect_folder(root: Path, out: Path, processes: int) -> tuple[list[dict[str, object]], bytes]:
    """Inspect every file under `root` as one shard: (its rows by id, its uint8 cache)."""
    storage = LocalStorage(root)
    out.mkdir()
    with decoding_in_processes(processes):
        inspect_shard_files(list(storage.list_objects()), 0, storage, 32, ChecksConfig(), VideoConfig(), out)
    rows = sorted(pq.read_table(out / SAMPLES_FILE).to_pylist(), key=lambda row: str(row["id"]))
    return rows, (out / IMAGES_FILE).read_bytes()


def test_processes_give_the_threads_rows_and_pixels_bad_files_included(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_scene_crops(root, per_scene=12)
    scene("coffee").save(root / "coffee.png")
    scene("astronaut").resize((40, 30)).save(root / "tiny.webp")
    (root / "empty.jpg").write_bytes(b"")
    (root / "cut.jpg").write_bytes(jpeg_bytes(scene("chelsea"))[:900])
    (root / "notes.png").write_bytes(b"plain text pretending to be a picture")

    threads = inspect_folder(root, tmp_path / "threads", processes=0)
    processes = inspect_folder(root, tmp_path / "processes", processes=2)

    assert processes == threads
    rows = {row["key"]: row for row in processes[0]}
    assert sum(row["status"] == "ok" for row in rows.values()) == len(rows) - 3
    assert rows["empty.jpg"]["reason"] == "zero-byte file"
    assert "truncated" in str(rows["cut.jpg"]["reason"])
    assert "not an image" in str(rows["notes.png"]["reason"])


def test_only_what_a_process_may_hold_goes_to_one() -> None:
    """JPEGs decode reduced in the DCT, so any goes; another format only up to PROCESS_PIXELS,
    as larger ones are decoded under the inspecting process's shared pixel budget."""
    side = int(PROCESS_PIXELS**0.5) + 1
    big = Image.new("L", (side, side))
    assert fits_a_process(jpeg_bytes(big.convert("RGB")))
    assert not fits_a_process(encode_png(big))
    assert fits_a_process(encode_png(big.resize((side // 2, side // 2))))
    assert fits_a_process(b"not an image at all")  # the process records why


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def decoding_workers() -> list[psutil.Process]:
    """This process's loky decoding workers."""
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if "loky" in " ".join(child.cmdline()) and "resource_tracker" not in " ".join(child.cmdline())
    ]


@pytest.mark.skipif(os.cpu_count() == 1, reason="needs two worker processes")
def test_a_decoding_worker_killed_mid_shard_loses_no_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "images"
    keys = write_scene_crops(root, per_scene=150, side=160)
    killed: list[tuple[int, float]] = []  # (pid, when)

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            workers = decoding_workers()
            if workers:
                time.sleep(0.3)  # into the shard's batches
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append((workers[0].pid, time.monotonic()))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    rows, cache = inspect_folder(root, tmp_path / "out", processes=2)
    finished = time.monotonic()
    killer.join()

    assert killed, "no decoding worker started"
    assert killed[0][1] < finished, "the worker was killed after the shard was done"
    assert "a decoding process ended" in caplog.text  # its batches were tried again
    assert len(rows) == len(keys) and all(row["status"] == "ok" for row in rows)
    pixels = np.frombuffer(cache, np.uint8).reshape(len(keys), 32, 32, 3)
    assert pixels.std(axis=(1, 2, 3)).min() > 1  # every image's pixels, none left blank


POOL_PROBE = """
import sys, time, psutil
from tasks.media.processes import decoding_executor
pool = decoding_executor(2)
assert sorted(pool.map(abs, [-1, -2, -3, -4])) == [1, 2, 3, 4]
workers = [c.pid for c in psutil.Process().children() if "loky" in " ".join(c.cmdline())]
print(" ".join(map(str, workers)), flush=True)
time.sleep(600)
"""


def test_decoding_workers_end_when_their_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the flow's process no time to stop its pool: the workers notice their
    parent is gone and end, rather than idling on for minutes."""
    probe = subprocess.Popen(
        [sys.executable, "-c", POOL_PROBE],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert probe.stdout is not None
        workers = [int(pid) for pid in probe.stdout.readline().split()]
        assert workers, "the pool started no worker"
    finally:
        probe.kill()
        probe.wait()
    assert all_end(workers, 15), "a decoding worker outlived its process"


def test_a_script_without_a_main_guard_runs_once(tmp_path: Path) -> None:
    """Workers are fresh interpreters that never re-run the caller's `__main__`: a user's
    script that calls `curate()` at its top level is not run again by each worker."""
    script = tmp_path / "curate_my_photos.py"
    script.write_text(
        'print("the script runs", flush=True)\n'
        "from tasks.media.processes import decoding_executor\n"
        "assert sorted(decoding_executor(2).map(abs, [-1, -2, -3])) == [1, 2, 3]\n"
    )
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("the script runs") == 1
