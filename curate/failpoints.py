"""Failpoints: named places where a test can have a process killed with SIGKILL, to prove resume works.

A real ``kill -9`` at a moment a test cannot otherwise hit reliably (after the third checkpoint part, after the
signatures stage): ``CURATE_FAILPOINT=<point>[:<n>]`` makes :func:`hit` send SIGKILL, when ``point`` is reached
for at least the ``n``-th time (the caller says how many times: e.g. parts on disk), to the process
``CURATE_FAILPOINT_PID`` names (the driver: the runner sets it at start), else to itself. Unset, a hit is one
dictionary lookup. Tests use it; nothing else should.

``CURATE_FAILPOINT=enospc:<text>`` instead makes every output write whose path contains ``<text>`` fail with
ENOSPC, as a full disk would: for machines where a test cannot mount a small filesystem to fill for real.

``CURATE_FAILPOINT=pause@<folder>:<point>[:<n>]`` instead holds every process that reaches the point: it leaves a
file ``<folder>/<point>.<pid>.json`` saying where it is (pid, Ray node id) and waits until ``<folder>/go`` exists.
A test then kills what it wants to lose (the node running a step, a whole cluster) at a known moment, and
creates ``go``; a process that reaches the point after that (a retried task) goes straight on. For tests on
one machine: the folder is shared by every node.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time

ENV, PID_ENV = "CURATE_FAILPOINT", "CURATE_FAILPOINT_PID"


def armed() -> bool:
    return bool(os.environ.get(ENV))


def hit(point: str, count: int = 1) -> None:
    """Kill the target process (hold this one, in pause mode) if ``point`` is the armed one and ``count`` has
    reached its threshold."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    folder = None
    if spec.startswith("pause@"):
        folder, _, spec = spec[len("pause@"):].partition(":")
    name, _, n = spec.rpartition(":")
    if not n.isdigit():  # no count given: the whole spec is the point
        name, n = spec, "1"
    if name != point or count < int(n):
        return
    if folder is not None:
        _pause(folder, point)
        return
    pid = int(os.environ.get(PID_ENV) or os.getpid())
    os.kill(pid, signal.SIGKILL)
    if pid != os.getpid():  # the driver is gone; this worker would only go on writing for nobody
        os.kill(os.getpid(), signal.SIGKILL)


PAUSE_MOST_S = 900.0


def _pause(folder: str, point: str) -> None:
    go = os.path.join(folder, "go")
    if os.path.exists(go):
        return
    try:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001  (where it is, if Ray can say)
        node = None
    with open(os.path.join(folder, f"{point.replace('/', '_')}.{os.getpid()}.json"), "w") as f:
        json.dump({"point": point, "pid": os.getpid(), "node_id": node}, f)
    deadline = time.time() + PAUSE_MOST_S
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.2)


def io_error(path: str) -> None:
    """Raise ENOSPC for a write to ``path`` if ``enospc:<text>`` is armed and the path contains ``<text>``."""
    spec = os.environ.get(ENV)
    if spec and spec.startswith("enospc:") and spec[len("enospc:"):] in path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
