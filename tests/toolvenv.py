"""Cached virtualenvs with other people's tools (the dolma toolkit, Hugging Face datasets, OLMo-core), for tests
that check curate's output with the real consumers of it, never with an imitation.

Each venv is installed from a fully pinned list (tests/venvs/<name>.txt, a `pip freeze` of a working install)
with ``--no-deps`` (in the environment its ``# pip-env: NAME=VALUE`` lines set): no resolver run (dolma's open
requirements made pip's resolver search for minutes), the same
versions on every machine. Built once under ``.cache/venvs/<name>-<hash of the list>/`` (about a minute each,
from the package registry) and reused; a changed list builds a new one. A file lock lets parallel test
processes share one build.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LISTS = Path(__file__).resolve().parent / "venvs"


def tool_venv(name: str) -> Path:
    """The venv directory for tests/venvs/<name>.txt, built if missing."""
    reqs = LISTS / f"{name}.txt"
    key = hashlib.sha256(reqs.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = REPO / ".cache" / "venvs" / f"{name}-{key}"
    done = venv / ".complete"
    if done.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a build that died half-way
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = dict(os.environ)
        for line in reqs.read_text().splitlines():  # `# pip-env: NAME=VALUE`: set for this list's install
            if line.startswith("# pip-env:"):
                name, _, value = line.split(":", 1)[1].strip().partition("=")
                env[name] = value
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", "-r", str(reqs)], check=True, env=env)
        done.write_text("ok\n")
    return venv
