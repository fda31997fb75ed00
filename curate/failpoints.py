"""Failpoints: named places where a test can have a process killed with SIGKILL, to prove resume works.

A real ``kill -9`` at a moment a test cannot otherwise hit reliably (after the third checkpoint part, after the
signatures stage): ``CURATE_FAILPOINT=<point>[:<n>]`` makes :func:`hit` send SIGKILL, when ``point`` is reached
for at least the ``n``-th time (the caller says how many times: e.g. parts on disk), to the process
``CURATE_FAILPOINT_PID`` names (the driver: the runner sets it at start), else to itself. Unset, a hit is one
dictionary lookup. Tests use it; nothing else should.

``CURATE_FAILPOINT=enospc:<text>`` instead makes every output write whose path contains ``<text>`` fail with
ENOSPC, as a full disk would: for machines where a test cannot mount a small filesystem to fill for real.
"""

from __future__ import annotations

import errno
import os
import signal

ENV, PID_ENV = "CURATE_FAILPOINT", "CURATE_FAILPOINT_PID"


def armed() -> bool:
    return bool(os.environ.get(ENV))


def hit(point: str, count: int = 1) -> None:
    """Kill the target process if ``point`` is the armed one and ``count`` has reached its threshold."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, n = spec.rpartition(":")
    if not n.isdigit():  # no count given: the whole spec is the point
        name, n = spec, "1"
    if name != point or count < int(n):
        return
    pid = int(os.environ.get(PID_ENV) or os.getpid())
    os.kill(pid, signal.SIGKILL)
    if pid != os.getpid():  # the driver is gone; this worker would only go on writing for nobody
        os.kill(os.getpid(), signal.SIGKILL)


def io_error(path: str) -> None:
    """Raise ENOSPC for a write to ``path`` if ``enospc:<text>`` is armed and the path contains ``<text>``."""
    spec = os.environ.get(ENV)
    if spec and spec.startswith("enospc:") and spec[len("enospc:"):] in path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
