"""Wall time and memory of a command's whole process tree (driver, Ray's processes, workers, children)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def measure(cmd: list[str], cwd: Path = REPO, env: dict[str, str] | None = None, every: float = 0.5,
            expect_rc: int = 0) -> dict:
    """Run ``cmd``; sample memory every ``every`` s. Returns wall_s, tree_mb (peak of the summed RSS of the tree),
    pss_mb (peak of its summed PSS: shared pages, such as Ray's object store, counted once across the tree, not
    once per process), driver_mb (peak RSS of the root process), worker_mb (peak RSS of the largest other
    process), cpu_s (CPU seconds the whole machine spent while it ran, from /proc/stat: the tree's processes
    including those it started and killed, which per-process sampling misses; NaN where /proc/stat is not
    there), stdout, stderr. Processes of the tree still alive at the end (a killed driver leaves its Ray behind)
    are killed, by pid."""
    cpu0 = machine_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    peaks: dict[int, int] = defaultdict(int)
    seen: dict[int, psutil.Process] = {}
    tree_peak = pss_peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal tree_peak, pss_peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = pss = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    seen.setdefault(p.pid, p)
                    try:
                        mem = p.memory_full_info()  # /proc/<pid>/smaps_rollup: rss and pss
                    except psutil.Error:
                        continue
                    peaks[p.pid] = max(peaks[p.pid], mem.rss)
                    total += mem.rss
                    pss += getattr(mem, "pss", mem.rss)
            except psutil.Error:
                pass
            tree_peak = max(tree_peak, total)
            pss_peak = max(pss_peak, pss)
            stop.wait(every)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall, cpu = time.perf_counter() - t0, machine_cpu_s() - cpu0
    stop.set()
    th.join()
    for p in seen.values():
        try:
            if p.pid != proc.pid and p.is_running():
                p.kill()
        except psutil.Error:
            pass
    if proc.returncode != expect_rc:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}):\n{err[-4000:]}")
    driver = peaks.pop(proc.pid, 0)
    return {"wall_s": wall, "cpu_s": cpu, "tree_mb": tree_peak / 1e6, "pss_mb": pss_peak / 1e6,
            "driver_mb": driver / 1e6,
            "worker_mb": max(peaks.values(), default=0) / 1e6, "stdout": out, "stderr": err}


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
