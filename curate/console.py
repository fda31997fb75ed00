"""What `curate run` shows a person: one live progress display in curate's step names, and nothing of Ray's.

Three modes, picked by the CLI:

- ``live`` (stdout is a terminal): a rich display redrawn once a second from the run's stats (documents in and out
  per step so far, rate, bytes of input read, ETA by input bytes), cleared when the run ends so the final table
  stands alone.
- ``plain`` (not a terminal: a Ray job's log, CI, a pipe): one line of the same numbers every ``interval_s``
  seconds, so a job log shows progress without drowning in it.
- ``quiet`` (``-q``): nothing until the summary.

Ray's own output (INFO lines about its executor, the token-auth notice, the C++ core's messages, which Python
logging cannot reach) goes to a log file, never to the terminal: while the run goes, file descriptors 1 and 2 of
this process point at that file, and curate writes to duplicates of the real ones. Warnings from Ray's Python
loggers are counted and, where they matter to a user, restated in curate's words (``RESTATE``); the summary
names the log file.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import IO, Any

# Ray warnings worth a user's attention, as (pattern of Ray's message, what curate says). Everything else Ray
# logs stays in the log file (counted in the summary).
RESTATE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"memory monitor|killed due to (low )?memory|OutOfMemory|out of memory", re.I),
     "a worker was killed for lack of memory; Ray retries its task (give steps fewer CPUs or the machine more "
     "memory if it repeats)"),
    (re.compile(r"[Ss]pill(ed|ing)"), "Ray is spilling objects to disk: the run needs more memory than Ray's "
                                      "object store has (slower, not wrong)"),
    (re.compile(r"node .*(died|dead|removed)|raylet .*died", re.I), "a Ray node died; its tasks are retried"),
]
# Ray's notices that say nothing about this run: an actor pool holding every CPU (how curate runs a model step),
# token authentication being on (Ray 2.60's default), the progress bars curate turns off for its own display
IGNORED = [re.compile(r"does not have any available CPUs"), re.compile(r"Token authentication is enabled"),
           re.compile(r"Progress bars disabled")]


def fmt_duration(s: float | None) -> str:
    if s is None or s != s or s < 0:
        return "-"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def eta(doc: dict[str, Any]) -> float | None:
    """Seconds left, by input bytes read: elapsed x (total - read) / read. None before the first bytes."""
    inp = doc.get("inputs", {})
    total, read = inp.get("bytes_total") or 0, inp.get("bytes_read") or 0
    if not total or not read or read >= total:
        return None
    return doc["elapsed_s"] * (total - read) / read


def step_cells(s: dict[str, Any]) -> tuple[str, str, str, str]:
    """(in, out, rate, note) of one step of a running stats doc: what moved so far."""
    done_in = s.get("rows_processed", 0)
    out = s.get("rows_out")
    rate = ""
    if s.get("wall_s") and done_in:
        rate = f"{done_in / s['wall_s']:.1f}/s"
    note = ""
    if s.get("stages"):  # a whole-dataset step: the stage it finished last
        note = f"{list(s['stages'])[-1]} done"
        done_in = s.get("stage_rows", done_in)
    return (str(done_in) if done_in else "", "" if out is None else str(out), rate, note)


def plain_line(doc: dict[str, Any]) -> str:
    """One line for a log: time, input read, ETA, and each step that has moved (in>out)."""
    inp = doc.get("inputs", {})
    total, read = inp.get("bytes_total") or 0, inp.get("bytes_read") or 0
    share = f" {100 * read / total:.0f}%" if total else ""
    parts = [f"[curate {fmt_duration(doc['elapsed_s'])}] read{share} ({fmt_bytes(read)} of {fmt_bytes(total)}), "
             f"ETA {fmt_duration(eta(doc))}"]
    for s in doc["steps"]:
        i, o, rate, note = step_cells(s)
        if i or note:
            parts.append(f"{s['step']} {i or '-'}" + (f">{o}" if o else "") + (f" {rate}" if rate else "")
                         + (f" ({note})" if note else ""))
    return " | ".join(parts)


class _WarningTap(logging.Handler):
    """Counts WARNING+ records of Ray's Python loggers; restates the ones that matter (RESTATE) once each."""

    def __init__(self, say) -> None:
        super().__init__(logging.WARNING)
        self.say, self.count, self.said = say, 0, set()
        self._last: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record is self._last:  # the same record again, propagated from a child logger to a parent we tap
            return
        self._last = record
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            return
        if any(p.search(msg) for p in IGNORED):
            return
        self.count += 1
        for pattern, text in RESTATE:
            if pattern.search(msg) and text not in self.said:
                self.said.add(text)
                self.say(f"warning: {text}")


class RunConsole:
    """The terminal side of one `curate run`. The runner calls `capture` once it knows where output goes, then
    `update` with each stats render (about once a second), then `close`."""

    LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")

    def __init__(self, mode: str = "live", interval_s: float = 30.0, title: str = ""):
        if mode not in ("live", "plain", "quiet"):
            raise ValueError(mode)
        self.mode, self.interval_s, self.title = mode, interval_s, title
        self.log_path: str | None = None
        self._saved: tuple[int, int] | None = None
        self.out: IO[str] = sys.stdout
        self.err: IO[str] = sys.stderr
        self._live: Any = None
        self._last_plain = 0.0
        self._lock = threading.Lock()
        self._tap = _WarningTap(self.say)

    @staticmethod
    def pick(quiet: bool, interval_s: float = 30.0, stream: IO[str] | None = None) -> "RunConsole":
        """``quiet`` -> quiet; a terminal -> live; anything else (a job log, a pipe) -> plain lines."""
        stream = stream or sys.stdout
        if quiet:
            return RunConsole("quiet")
        return RunConsole("live" if stream.isatty() else "plain", interval_s)

    # ------------------------------------------------------------------------------------------ capture
    def capture(self, log_path: str, header: str, append: bool = False) -> None:
        """From now on fds 1 and 2 write to ``log_path`` (Ray's output, ours included if printed plainly); curate
        writes to duplicates of the real stdout/stderr. ``append``: a resumed run adds to the first one's log."""
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        real_out, real_err = os.dup(1), os.dup(2)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self._saved = (real_out, real_err)
        self.out = os.fdopen(os.dup(real_out), "w", buffering=1, encoding="utf-8", errors="replace")
        self.err = os.fdopen(os.dup(real_err), "w", buffering=1, encoding="utf-8", errors="replace")
        self.log_path = log_path
        self._attach()
        if self.mode != "quiet":
            print(header, file=self.out, flush=True)
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out, force_terminal=True)
            self._live = Live(console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()

    def say(self, line: str) -> None:
        """A line of curate's own (a restated warning) above the live display, or on its own line."""
        with self._lock:
            if self._live is not None:
                self._live.console.print(line, markup=False, highlight=False)
            else:
                print(line, file=self.err, flush=True)

    def _attach(self) -> None:
        """Tap Ray's loggers (again: ``ray.init`` configures its logging and may replace handlers)."""
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if self._tap not in logger.handlers:
                logger.addHandler(self._tap)

    # ------------------------------------------------------------------------------------------ updates
    def update(self, doc: dict[str, Any]) -> None:
        self._attach()
        with self._lock:
            if self.mode == "live" and self._live is not None:
                self._live.update(self.render(doc), refresh=True)
            elif self.mode == "plain" and time.monotonic() - self._last_plain >= self.interval_s:
                if self._last_plain:  # the first line waits one interval: short runs print none
                    print(plain_line(doc), file=self.out, flush=True)
                self._last_plain = time.monotonic()

    def render(self, doc: dict[str, Any]):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for name, just in (("step", "left"), ("in", "right"), ("out", "right"), ("rate", "right"), ("", "left")):
            table.add_column(name, justify=just)  # type: ignore[arg-type]
        for s in doc["steps"]:
            table.add_row(s["step"], *step_cells(s))
        inp = doc.get("inputs", {})
        total, read = inp.get("bytes_total") or 0, inp.get("bytes_read") or 0
        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=max(total, 1), completed=min(read, total), width=30),
                     Text(f"{fmt_bytes(read)} / {fmt_bytes(total)} read · {fmt_duration(doc['elapsed_s'])} elapsed"
                          f" · ETA {fmt_duration(eta(doc))}"))
        outer = Table.grid()
        outer.add_row(table)
        outer.add_row(grid)
        return outer

    # ------------------------------------------------------------------------------------------ close
    def close(self) -> None:
        """Stop the display and give fds 1 and 2 back (always called, also when the run fails)."""
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self._tap)
        if self._saved is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        real_out, real_err = self._saved
        os.dup2(real_out, 1)
        os.dup2(real_err, 2)
        os.close(real_out)
        os.close(real_err)
        self._saved = None
        for f in (self.out, self.err):
            try:
                f.close()
            except OSError:
                pass
        self.out, self.err = sys.stdout, sys.stderr

    def summary_line(self, root: str | None = None) -> str | None:
        """Where Ray's output went, for the final lines (relative to the output root when it is under it)."""
        if self.log_path is None:
            return None
        n = self._tap.count
        where = self.log_path
        if root:
            base = (root if "://" in root else os.path.abspath(root)).rstrip("/") + "/"
            if where.startswith(base):
                where = where[len(base):]
        return f"Ray's output: {where}" + (f" ({n} warning{'s' * (n != 1)} from Ray)" if n else "")
