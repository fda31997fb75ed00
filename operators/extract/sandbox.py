"""A killable child process that runs one function call at a time with a CPU-time budget.

Why a child process: an extractor can hang in C code (lxml on a pathological tree), blow up memory, or crash the
interpreter. A signal-based timeout cannot interrupt C code and a thread cannot be killed; a child process can.
A plain subprocess (not multiprocessing) is used because inside a Ray worker, spawn/forkserver would re-import
Ray's worker script as __main__, and fork of a multi-threaded Ray worker is unsafe.

Why CPU seconds, not wall seconds: the budget decides whether a document is kept, so it must not depend on what
else the machine is doing. A page's CPU time is (nearly) the same on a quiet machine and under load, its wall
time is not (on a machine shared 2:1 a 6 s page takes 12 s). The parent reads the child's user + system time
(``/proc/<pid>/stat`` through psutil) while it waits and kills the child once one call has used ``cpu_s`` CPU
seconds. A much larger wall-clock backstop (``wall_s``) catches the one thing CPU time cannot see: a child that
hangs without computing (blocked on a lock or a pipe).

Protocol: 4-byte big-endian length + pickle, both ways. The child imports ``module`` and calls
``module.<function>(payload)`` for each request. On a timeout or a crash the parent kills the child and starts a
new one lazily, so the cost of a bad page is one counted error and one restart (about half a second).
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import time
from typing import Any


class SandboxTimeout(Exception):
    """One call used more than its CPU budget (``hung`` False) or hung past the wall-clock backstop (True)."""

    def __init__(self, hung: bool = False):
        super().__init__("hung past the wall-clock backstop" if hung else "CPU budget exceeded")
        self.hung = hung


# how often the parent looks at the child's CPU time while a call runs; most pages answer before the first look
POLL_S = 0.05


class SandboxCrashed(Exception):
    pass


class Sandbox:
    def __init__(self, module: str, function: str, memory_limit_mb: int | None = 2048,
                 path_first: list[str] | None = None):
        self.module, self.function, self.memory_limit_mb = module, function, memory_limit_mb
        self.path_first = list(path_first or [])  # folders searched before the parent's path (a pinned package)
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-u", "-m", "operators.extract.sandbox", self.module, self.function,
                str(self.memory_limit_mb or 0)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [*self.path_first, *sys.path] if p)}
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def start(self, timeout: float = 120.0) -> None:
        """Start the child and wait until it has imported its module: start-up is not a document's time."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None:
            self.restarts += 1
        self.proc = self._start()
        import psutil

        self._ps = psutil.Process(self.proc.pid)
        if self._roundtrip(None, timeout, timeout) != "ready":
            raise SandboxCrashed("child did not start")

    def call(self, payload: Any, cpu_s: float, wall_s: float | None = None) -> Any:
        """Result of the function, or raise SandboxTimeout / SandboxCrashed / the child's exception. ``cpu_s``:
        the call's CPU-time budget; ``wall_s``: the wall-clock backstop (default: 30x the budget, at least 300 s)."""
        self.start()
        return self._roundtrip(payload, cpu_s, wall_s if wall_s is not None else max(300.0, 30 * cpu_s))

    def _cpu(self) -> float:
        """CPU seconds (user + system) the child has used since it started."""
        try:
            t = self._ps.cpu_times()
            return t.user + t.system
        except Exception:  # noqa: BLE001 (gone: the read that follows reports how it ended)
            return 0.0

    def _roundtrip(self, payload: Any, cpu_s: float, wall_s: float) -> Any:
        proc = self.proc
        assert proc is not None
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        cpu0 = self._cpu()
        try:
            proc.stdin.write(struct.pack(">I", len(data)) + data)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError) as e:
            self.kill()
            raise SandboxCrashed(f"child gone before request: {e}") from None
        budget = (cpu0 + cpu_s, time.monotonic() + wall_s)
        try:
            header = self._read(proc, 4, budget)
            (size,) = struct.unpack(">I", header)
            status, value = pickle.loads(self._read(proc, size, budget))
        except SandboxTimeout:
            self.kill()
            raise
        if status == "ok":
            return value
        raise RuntimeError(value)

    def _read(self, proc: subprocess.Popen[bytes], n: int, budget: tuple[float, float]) -> bytes:
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        cpu_end, wall_end = budget
        buf = bytearray()
        while len(buf) < n:
            left = wall_end - time.monotonic()
            if left <= 0:
                raise SandboxTimeout(hung=True)
            ready, _, _ = select.select([fd], [], [], min(POLL_S, left))
            if not ready:
                if self._cpu() > cpu_end:
                    raise SandboxTimeout()
                continue
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                code = proc.wait()
                self.proc = None
                raise SandboxCrashed(f"child exited with code {code}")
            buf += chunk
        return bytes(buf)

    def kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass
            self.proc = None

    def __del__(self) -> None:  # pragma: no cover (best effort at interpreter exit)
        self.kill()


def _child_main(module: str, function: str, memory_limit_mb: int) -> None:
    import importlib
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    fn = getattr(importlib.import_module(module), function)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the protocol
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return
        (size,) = struct.unpack(">I", header)
        payload = pickle.loads(stdin.read(size))
        try:
            result: tuple[str, Any] = ("ok", "ready" if payload is None else fn(payload))
        except MemoryError:
            result = ("err", "MemoryError: page exceeded the sandbox memory limit")
        except Exception as e:  # noqa: BLE001
            result = ("err", f"{type(e).__name__}: {e}"[:500])
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(struct.pack(">I", len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
