"""The CLI in a real terminal: `python -m flows curate` on a pseudo-terminal, its output played
into a terminal emulator (pyte), screen by screen, as a user would see it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pyte

REPO = Path(__file__).resolve().parent.parent
STAGES = ("discovering", "inspecting", "training", "exporting", "embedding", "selecting", "publishing")
COLUMNS, LINES = 160, 100
# How rich's live display begins each redraw: back to the line's start, erase it.
REDRAW = b"\r\x1b[2K"
# A stage's row drawn to its end: count, elapsed time, then the detail.
# The training row while an epoch short of the last is shown.
TRAINING = re.compile(r"epoch [1-7]/8, loss")
WHOLE_ROW = re.compile(r" \d+/(\d+|\?) (-:--:--|\d+:\d\d:\d\d) \S")


def stage_rows(screen: pyte.Screen) -> dict[str, list[str]]:
    """{stage: every screen line that starts with its label}."""
    return {stage: [line for line in screen.display if line.startswith(stage + " ")] for stage in STAGES}


def test_the_bars_list_every_stage_advance_live_and_keep_log_lines_above_them(tmp_path: Path) -> None:
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
    command = [sys.executable, "-m", "flows", "curate", "--source", str(REPO / "examples" / "images")]
    process = subprocess.Popen(
        [*command, "--output", str(tmp_path / "out"), "--n-samples", "5", "--epochs", "8"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        env=env,
    )
    os.close(follower)
    seen_while_training: list[dict[str, list[str]]] = []
    partial: list[str] = []  # the last screen with a training epoch that failed the checks
    pending = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 600)
        assert ready, "the CLI printed nothing for 10 minutes"
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the CLI ended and closed the terminal
            break
        if not chunk:
            break
        # Look at the screen between redraws (each starts by erasing its first line), never
        # halfway through one: a read can end anywhere.
        *frames, pending = (pending + chunk).split(REDRAW)
        for frame in frames:
            stream.feed(frame)
            rows = stage_rows(screen)
            whole = all(len(lines) == 1 and WHOLE_ROW.search(lines[0]) for lines in rows.values())
            if whole and TRAINING.search(rows["training"][0]):
                seen_while_training.append(rows)
            elif any("epoch" in line for line in rows["training"]):
                partial = list(screen.display)
            stream.feed(REDRAW)
    stream.feed(pending)
    assert process.wait(timeout=60) == 0, "\n".join(screen.display)

    # While it trained, every stage was already listed, the later ones still waiting.
    assert seen_while_training, "no whole display while training:\n" + "\n".join(partial)
    during = seen_while_training[0]
    assert "waiting" in during["publishing"][0]
    assert "/8 " in during["training"][0]

    # At the end: each stage once, finished, with the time it took; training took seconds.
    final = stage_rows(screen)
    assert all(len(lines) == 1 for lines in final.values()), "\n".join(screen.display)
    assert "8/8" in final["training"][0] or "1/1" in final["training"][0]
    assert "0:00:00" not in final["training"][0], final["training"][0]
    # Log lines print above the bars, whole: none is glued to a bar, none repeats a bar.
    text = [line.rstrip() for line in screen.display if line.strip()]
    bar_rows = [i for i, line in enumerate(text) if line.startswith(STAGES)]
    logs = [i for i, line in enumerate(text) if "| INFO " in line]
    assert logs and bar_rows
    assert all("━" not in text[i] for i in logs)
    assert bar_rows == list(range(bar_rows[0], bar_rows[0] + len(STAGES)))
    assert any("tasks.model_runtime.training - epoch 8/8" in line for line in text)
    assert text[-3].startswith("selected 5 of ")
    assert not any("Traceback" in line or "database is locked" in line for line in text)
