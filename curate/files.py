"""Where curate keeps what it builds once per machine, and how it names a file's content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """``$CURATE_CACHE/<kind>`` (default ``~/.cache/curate/<kind>``): de-quantised models, tokenizer files,
    training-time loss caches. Safe to delete; everything in it is rebuilt on demand."""
    return Path(os.environ.get("CURATE_CACHE", Path.home() / ".cache" / "curate")) / kind


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MB blocks (model and vocabulary identities in records and manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
