"""One results record per benchmark: bench/results/<name>.json, which the docs site's benchmark pages are generated
from (docs/gen.py). A record says when, where and how it was measured, so a table is never read without them."""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """CPU model, cores, memory and GPU (if any): what a reader needs to compare numbers across records."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem_s = f", {mem:.0f} GiB"
    except (ValueError, OSError):
        mem_s = ""
    gpu = "no GPU" if not Path("/dev/nvidia0").exists() else "NVIDIA GPU"
    return f"{cpu}, {os.cpu_count()} CPUs{mem_s}, {gpu}; Python {platform.python_version()}"


def save(name: str, title: str, tables: list[dict[str, Any]], summary: str = "", notes: str = "",
         command: str | None = None, **extra: Any) -> Path:
    """Write bench/results/<name>.json. ``tables``: ``[{"title", "columns": [...], "rows": [[...], ...]}]``."""
    record = {"title": title, "summary": summary, "date": extra.pop("date", None) or time.strftime("%Y-%m-%d"),
              "machine": machine(),
              "command": command or "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
              "tables": tables, "notes": notes, **extra}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path


_ACTIVE: list[list[dict[str, Any]]] = []  # the tables of the recording in progress


def add_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A structured table for the record being written (`recording`); nothing without one."""
    if _ACTIVE:
        _ACTIVE[-1].append({"title": title, "columns": columns, "rows": rows})


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any):
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


@contextmanager
def recording(name: str, title: str, summary: str = "") -> Iterator[list[dict[str, Any]]]:
    """Run a benchmark's main under this: what it prints is kept as the record's `output` (the tables as the bench
    prints them), beside any structured tables it appends to the yielded list. Written only if main returns."""
    buf = io.StringIO()
    tables: list[dict[str, Any]] = []
    real = sys.stdout
    sys.stdout = _Tee(real, buf)  # type: ignore[assignment]
    _ACTIVE.append(tables)
    try:
        yield tables
    finally:
        sys.stdout = real
        _ACTIVE.pop()
    path = save(name, title, tables, summary=summary, output=buf.getvalue())
    print(f"results: {os.path.relpath(path)}")
