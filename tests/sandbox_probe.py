"""Functions the extract sandbox's child runs in tests/test_operators.py: one that computes, one that only waits."""

from __future__ import annotations

import time


def spin(payload: dict) -> int:
    """CPU work for ``payload['cpu_s']`` CPU seconds of this process (measured, not wall time)."""
    end = time.process_time() + payload["cpu_s"]
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def sleep(payload: dict) -> str:
    """Wall time without CPU: a child blocked on something."""
    time.sleep(payload["wall_s"])
    return "slept"
