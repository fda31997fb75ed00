"""Worker failures: `kill -9` of a Ray worker process in the middle of extraction. Ray restarts the actor (Ray
Data sets max_restarts / max_task_retries to -1 for actor pools; tasks retry 3 times), its in-flight blocks are
redone, and since every part is named by input file and first ordinal and written atomically, the output is
byte-identical to an uninterrupted run. The killed process is found among the descendants of the `curate run`
process this test started (never by name across the machine)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from conftest import ENGLISH, REPO, article, write_warc

FILES, PAGES = 8, 200


def _corpus(d: Path) -> Path:
    d.mkdir(parents=True)
    rng = random.Random(7)
    for f in range(FILES):
        recs = []
        for p in range(PAGES):
            sents = [f"Record {f}-{p}: {s}" for s in rng.sample(ENGLISH * 6, 40)]
            recs.append((f"http://site{f}.test/page{p}", article(f"Page {f}-{p}", sents).encode(),
                         "text/html; charset=utf-8"))
        write_warc(d / f"crawl-{f:02d}.warc.gz", recs)
    return d


def _config(tmp: Path, corpus: Path) -> Path:
    cfg = {"input": {"paths": [str(corpus)], "docs_per_block": 25}, "output": {"added": "2026-01-01T00:00:00Z"},
           "ray": {"num_cpus": 2},
           "steps": [{"name": "extract", "timeout_s": 120}, {"name": "langid"}, {"name": "quality_signals"},
                     {"name": "preselect"}]}
    path = tmp / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sums(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("stats.json", "progress.jsonl", "ray.log")}


def _run(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(out), "-q"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _extract_progress(out: Path) -> int:
    try:
        stats = json.loads((out / "stats.json").read_text())
    except (OSError, ValueError):
        return 0
    return next((s.get("rows_processed", 0) for s in stats["steps"] if s["step"] == "extract"), 0)


def test_kill_9_of_a_worker_mid_extraction_changes_nothing(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    cfg = _config(tmp_path, corpus)
    clean = _run(cfg, tmp_path / "clean")
    _, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err[-3000:]

    out = tmp_path / "killed"
    proc = _run(cfg, out)
    total, killed = FILES * PAGES, None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            done = _extract_progress(out)
            if 0.15 * total <= done <= 0.7 * total:
                workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                           if "MapWorker" in " ".join(p.cmdline())]
                if workers:
                    killed = workers[0].pid
                    os.kill(killed, signal.SIGKILL)
                    break
            time.sleep(0.1)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "extraction finished before a worker could be killed: make the corpus larger"
    assert proc.returncode == 0, err[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["status"] == "done" and stats["totals"]["balanced"]
    assert stats["totals"]["documents_in"] == total
    extract = next(s for s in stats["steps"] if s["step"] == "extract")
    assert extract["workers"] >= 3  # the two actors it started with, and the one Ray restarted
    assert _sums(out) == _sums(tmp_path / "clean")
