"""What `curate run` shows a person (curate/console.py): on a terminal, a live display in curate's step names and a
final table, at most ~25 lines, none of Ray's; in a log, plain progress lines. The terminal is a real pseudo-
terminal read through pyte, a VT100 emulator, so the test sees the screen a person would, redraws resolved."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

COLS, ROWS = 160, 50
RAY_LINE = re.compile(r"\b(INFO|WARNING)\b .*\.py:\d+ --|core_worker\.cc|raylet|streaming_executor")


def run_on_terminal(args: list[str], cwd: Path, timeout: float = 300) -> tuple[bytes, int]:
    """Run ``args`` with stdin/stdout/stderr on a fresh pseudo-terminal of COLS x ROWS; (all it wrote, exit code)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
    proc = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        os.close(master)
    return b"".join(chunks), code


def screen_lines(raw: bytes) -> list[str]:
    """What the terminal shows after the run, scrollback included, trailing blank lines left out."""
    import pyte

    screen = pyte.HistoryScreen(COLS, ROWS, history=10_000)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)  # the terminal's line discipline already turned "\n" into "\r\n"
    history = ["".join(line[x].data for x in range(COLS)).rstrip() for line in screen.history.top]
    lines = history + [ln.rstrip() for ln in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def test_a_terminal_run_shows_curate_progress_and_the_table_only(tmp_path):
    """`make run`'s command on a terminal: the live display appears during the run (step names, ETA by bytes),
    then the terminal holds the table (a row a step) and where things are, at most 14 lines more, and no line of
    Ray's; Ray's output is in OUT/logs/ray.log."""
    from curate.config import load_config

    out = tmp_path / "sample"
    raw, code = run_on_terminal([sys.executable, "-m", "curate.cli", "run", "pipeline.yaml", "-o", str(out)],
                                cwd=REPO)
    lines = screen_lines(raw)
    shown = "\n".join(lines)
    assert code == 0, shown[-3000:]
    text = raw.decode("utf-8", "replace")
    assert "ETA" in text and "read ·" in text and "fineweb_quality" in text  # the live display was drawn
    rows = len(load_config(REPO / "pipeline.yaml").steps) + 2  # and read, write
    assert len(lines) <= rows + 14, shown
    assert not [ln for ln in lines if RAY_LINE.search(ln)], shown
    assert any(ln.startswith("documents in 114 = out") for ln in lines), shown
    assert any(ln.startswith("step") and "reasons" in ln for ln in lines)
    log = out / "logs" / "ray.log"
    assert "Ray's output: logs/ray.log" in shown
    assert "streaming_executor" in log.read_text()  # Ray's INFO lines went to the log, not the terminal


def test_a_log_gets_plain_progress_lines(tmp_path):
    """Not a terminal (a job's log, a pipe): no escape codes, one progress line every --progress-every seconds,
    Ray's lines in the log file."""
    out = tmp_path / "sample"
    res = subprocess.run([sys.executable, "-m", "curate.cli", "run", "pipeline.yaml", "-o", str(out),
                          "--progress-every", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    both = res.stdout + res.stderr
    assert res.returncode == 0, both[-3000:]
    assert "\x1b[" not in both
    progress = [ln for ln in res.stdout.splitlines() if ln.startswith("[curate ")]
    assert progress and all("ETA" in ln for ln in progress), res.stdout
    assert any(" | extract " in ln for ln in progress), res.stdout  # a line before any step moved has none
    assert not [ln for ln in both.splitlines() if RAY_LINE.search(ln)], both
    assert res.stdout.splitlines()[0].startswith("curate: pipeline.yaml -> ")


def test_ray_warnings_are_counted_and_the_ones_that_matter_restated(tmp_path):
    """Ray's Python loggers are tapped while a run's output is captured: a worker killed for memory is said in
    curate's words (once), Ray's notice about an actor pool holding every CPU is not counted, the rest are."""
    import logging

    from curate.console import RunConsole

    console = RunConsole("plain")
    said: list[str] = []
    console._tap.say = said.append
    console.capture(str(tmp_path / "ray.log"), "header")
    log = logging.getLogger("ray.data._internal.execution")
    level = log.level
    log.setLevel(logging.WARNING)  # a Ray started at ERROR earlier in this process (the suite's) would drop them
    try:
        for _ in range(2):
            log.warning("Task failed: the worker was killed due to memory pressure (OOM); retrying")
        log.warning("Warning: The Ray cluster currently does not have any available CPUs. The Dataset job will hang")
        log.warning("Truncating long operator name to 100 characters.")
    finally:
        log.setLevel(level)
        console.close()
    assert said == ["warning: a worker was killed for lack of memory; Ray retries its task (give steps fewer CPUs "
                    "or the machine more memory if it repeats)"]
    assert console._tap.count == 3
    assert console.summary_line(str(tmp_path)) == "Ray's output: ray.log (3 warnings from Ray)"
