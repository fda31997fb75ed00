"""Filesystems for input and output URLs (local paths, s3://, gs://, ...) with the fsspec options pipeline.yaml gives.

`input.storage_options` and `output.storage_options` hold what differs between stores (an S3 endpoint URL, a
region, `anon: true` for a public bucket, a profile name); they are keyed here by URL prefix (the input patterns'
roots, the output root), so a public input bucket and a private output bucket can take different options. Secrets
never enter pipeline.yaml (the config is recorded in stats.json and OUT/_run.json and shipped with every job):
credentials come from the standard places (AWS_* / GOOGLE_APPLICATION_CREDENTIALS env vars, profiles, instance or
workload identity) on the machine that reads or writes, and `config` refuses secret-looking keys.

Every process that touches storage (the driver, Ray workers on any node) asks `url_to_fs` / `open`; workers learn
the options from the environment variable ``CURATE_STORAGE_OPTIONS`` the runner puts in the job's runtime env.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import fsspec

ENV = "CURATE_STORAGE_OPTIONS"
# keys that would carry a credential: refused in pipeline.yaml (see module docstring)
SECRET_KEYS = re.compile(r"(^|_)(key|secret|token|password|passwd|credentials?|session)($|_)", re.I)
_SAFE_KEYS = {"key_file"}  # a path, not a secret
_SAFE_VALUES = {"anon", "google_default", "cloud"}  # gcsfs `token:` modes that name no secret

_registry: dict[str, dict[str, Any]] | None = None


def secret_keys(options: dict[str, Any], where: str = "") -> list[str]:
    """The keys of ``options`` (nested ones too, e.g. ``client_kwargs``) that look like credentials."""
    found = []
    for k, v in options.items():
        if SECRET_KEYS.search(k) and k not in _SAFE_KEYS and not (isinstance(v, str) and v in _SAFE_VALUES):
            found.append(f"{where}{k}")
        if isinstance(v, dict):
            found += secret_keys(v, f"{where}{k}.")
    return found


def _prefix(url: str) -> str:
    """The part of a URL or glob before its first wildcard, as a folder-or-file prefix."""
    cut = re.search(r"[*?\[]", url)
    return (url[:cut.start()] if cut else url).rstrip("/")


def _load() -> dict[str, dict[str, Any]]:
    global _registry
    if _registry is None:
        _registry = json.loads(os.environ.get(ENV) or "{}")
    return _registry


def configure(prefixes: dict[str, dict[str, Any]]) -> None:
    """Set the options of each URL prefix in this process and in the environment its children (local Ray workers)
    inherit; `env()` gives the same for a runtime env."""
    global _registry
    _registry = {_prefix(p): dict(o) for p, o in prefixes.items() if o and "://" in p}
    if _registry:
        os.environ[ENV] = json.dumps(_registry, sort_keys=True)
    else:
        os.environ.pop(ENV, None)


def env() -> dict[str, str]:
    """``{CURATE_STORAGE_OPTIONS: ...}`` for a Ray runtime env (empty when no store needs options)."""
    reg = _load()
    return {ENV: json.dumps(reg, sort_keys=True)} if reg else {}


def options_for(url: str) -> dict[str, Any]:
    """The options of the longest configured prefix that ``url`` starts with."""
    best, opts = -1, {}
    for prefix, o in _load().items():
        if (url == prefix or url.startswith(prefix + "/")) and len(prefix) > best:
            best, opts = len(prefix), o
    return opts


def url_to_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path) for a URL, with its configured options. Object-store listings are not cached between
    calls: other processes (workers on other nodes) write the folders this process lists."""
    fs, path = fsspec.core.url_to_fs(url, **options_for(url))
    if not is_local(fs):
        fs.invalidate_cache()
    return fs, path


def open(url: str, mode: str = "rb"):  # noqa: A001 - the fsspec name, on purpose
    """``fsspec.open`` with the URL's configured options (a context manager yielding a file object)."""
    return fsspec.open(url, mode, **options_for(url))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem (rename is atomic, append works, files can be memory-mapped)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def is_url(path: str) -> bool:
    """True for a URL with a protocol other than the local filesystem's."""
    proto = path.split("://", 1)[0] if "://" in path else ""
    return bool(proto) and proto not in ("file", "local")


