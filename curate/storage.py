"""Filesystems for input and output URLs (local paths, s3://, gs://, ...) with the fsspec options pipeline.yaml gives.

`input.storage_options` and `output.storage_options` hold what differs between stores (an S3 endpoint URL, a
region, `anon: true` for a public bucket, a profile name); they are keyed here by URL prefix (the input patterns'
roots, the output root), so a public input bucket and a private output bucket can take different options. Secrets
never enter pipeline.yaml (the config is recorded in stats.json and OUT/_run.json and shipped with every job):
credentials come from the standard places (AWS_* / GOOGLE_APPLICATION_CREDENTIALS env vars, profiles, instance or
workload identity) on the machine that reads or writes, and `config` refuses secret-looking keys.

Every process that touches storage (the driver, Ray workers on any node) asks `url_to_fs` / `open`; workers learn
the options from the environment variable ``CURATE_STORAGE_OPTIONS`` the runner puts in the job's runtime env.

Object stores misbehave under load (503 SlowDown, reset connections, slow answers). The client libraries retry a
request a few times (botocore in its ``standard`` mode, set here unless the options say otherwise: up to
``S3_ATTEMPTS`` attempts with exponential backoff and full jitter; s3fs around each call); what still fails, a
longer brown-out, is retried here around the whole operation (`retry`: exponential backoff with full jitter, up to
``ATTEMPTS`` times over about two minutes). A remote filesystem from `url_to_fs` does that for every call
(`RetryingFileSystem`); a file opened for reading reopens and seeks back to where it was when its connection
breaks (`RetryingReader`), and one opened for writing is sent whole when closed, so an object is never half
there: object stores publish an object only once its upload completes.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import time
from collections.abc import Callable
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


# botocore's own retries of one request (mode standard: exponential backoff with full jitter, up to 20 s a wait)
S3_ATTEMPTS = 10


def _client_options(url: str) -> dict[str, Any]:
    """The configured options, with botocore's standard retry mode for s3:// unless they set ``retries``."""
    opts = options_for(url)
    if url.startswith(("s3://", "s3a://")):
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("retries", {"mode": "standard", "max_attempts": S3_ATTEMPTS})
        opts = {**opts, "config_kwargs": config}
    return opts


def url_to_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path) for a URL, with its configured options. A remote filesystem comes wrapped in
    `RetryingFileSystem`. Object-store listings are not cached between calls: other processes (workers on other
    nodes) write the folders this process lists."""
    fs, path = fsspec.core.url_to_fs(url, **_client_options(url))
    if is_local(fs):
        return fs, path
    fs.invalidate_cache()
    return RetryingFileSystem(fs), path  # type: ignore[return-value]


class _Opened:
    """`open`'s context manager: the file, closed on exit."""

    def __init__(self, url: str, mode: str):
        self.url, self.mode, self.f = url, mode, None

    def __enter__(self):
        fs, path = url_to_fs(self.url)
        self.f = fs.open(path, self.mode)
        return self.f

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None and hasattr(self.f, "discard"):
            self.f.discard()  # a write that failed half-way publishes nothing
        self.f.close()


def open(url: str, mode: str = "rb") -> _Opened:  # noqa: A001 - the fsspec name, on purpose
    """A context manager yielding the file at ``url`` (its configured options; retried on a remote store)."""
    return _Opened(url, mode)


# ------------------------------------------------------------------------------------------------ retries
ATTEMPTS, BASE_S, CAP_S = 8, 0.5, 30.0
# what an overloaded or flaky store says, in the words of botocore, s3fs, aiohttp and gcsfs
_TRANSIENT_TEXT = re.compile(r"SlowDown|reduce your request rate|Service ?Unavailable|InternalError|"
                             r"RequestTimeout|Throttl|TooManyRequests|\b(500|502|503|504|429)\b|"
                             r"Connection (reset|aborted|closed)|ConnectionClosed|Server disconnected|"
                             r"Response payload is not completed|IncompleteRead|timed? ?out|EndpointConnection|"
                             r"Could not connect", re.I)
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def transient(e: BaseException) -> bool:
    """Whether ``e`` is the kind of storage error a retry can outlast (throttling, a dropped connection, a 5xx),
    as opposed to a missing object, a refused credential or a bad request."""
    if isinstance(e, _PERMANENT):
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:  # s3fs wraps botocore's error in an OSError: read the chain
        seen.add(id(x))
        if _TRANSIENT_TEXT.search(f"{type(x).__name__}: {x}"):
            return True
        x = x.__cause__ or x.__context__
    return False


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS's recommendation): uniform in [0, min(CAP_S, BASE_S * 2^n)]."""
    return (rng or random).uniform(0, min(CAP_S, BASE_S * 2 ** attempt))


def retry(fn: Callable[..., Any], *args: Any, what: str = "storage call", **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, again after a backoff while it fails with a transient error (`transient`), up to
    ATTEMPTS times; the last error is raised as it was."""
    for attempt in range(ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            if attempt == ATTEMPTS - 1 or not transient(e):
                raise
            time.sleep(backoff_s(attempt))
    raise AssertionError("unreachable")


class RetryingFileSystem:
    """A remote fsspec filesystem whose calls are retried (`retry`) and whose files survive dropped connections:
    reading reopens and seeks back (`RetryingReader`); writing sends the whole object on close (`WholeWrite`)."""

    RETRIED = frozenset({"info", "exists", "isdir", "isfile", "ls", "find", "glob", "walk", "du", "size", "cat",
                         "cat_file", "cat_ranges", "pipe", "pipe_file", "rm", "rm_file", "makedirs", "mkdir",
                         "mv", "copy", "get", "get_file", "put", "put_file", "modified", "checksum"})

    def __init__(self, fs: fsspec.AbstractFileSystem):
        self.fs = fs

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.fs, name)
        if name in self.RETRIED and callable(attr):
            return lambda *a, **k: retry(attr, *a, what=name, **k)
        return attr

    def open(self, path: str, mode: str = "rb", **kwargs: Any):
        if mode in ("rb", "r"):
            # buffered: readers ask for lines and small pieces (the store's file caches blocks underneath)
            buffered = io.BufferedReader(RetryingReader(self.fs, path, **kwargs), buffer_size=READ_BUFFER)
            return buffered if mode == "rb" else io.TextIOWrapper(buffered, encoding="utf-8")
        if mode in ("wb", "w"):
            return WholeWrite(self.fs, path, text=mode == "w")
        return self.fs.open(path, mode, **kwargs)


READ_BUFFER = 1 << 20


class RetryingReader(io.RawIOBase):
    """A remote file for reading that, when a read fails with a transient error (a reset connection, a body cut
    short), reopens the object and seeks back to where it was, after a backoff, up to ATTEMPTS times in a row."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, **kwargs: Any):
        super().__init__()
        self.fs, self.path, self.kwargs = fs, path, kwargs
        self.pos = 0
        self.f = retry(fs.open, path, "rb", what="open", **kwargs)
        self.size = getattr(self.f, "size", None)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = retry(self.f.seek, offset, whence, what="seek")
        return self.pos

    def readinto(self, buf) -> int:
        for attempt in range(ATTEMPTS):
            try:
                data = self.f.read(len(buf))
                break
            except Exception as e:  # noqa: BLE001
                if attempt == ATTEMPTS - 1 or not transient(e):
                    raise
                time.sleep(backoff_s(attempt))
                try:
                    self.f.close()
                except Exception:  # noqa: BLE001  (a broken connection may not close cleanly)
                    pass
                self.f = retry(self.fs.open, self.path, "rb", what="reopen", **self.kwargs)
                self.f.seek(self.pos)
        n = len(data)
        buf[:n] = data
        self.pos += n
        return n

    def close(self) -> None:
        try:
            self.f.close()
        finally:
            super().close()


class WholeWrite(io.BytesIO):
    """A remote file for writing: held in memory and sent as one object on ``close`` (retried), so a reader never
    sees part of it and a dropped connection costs a resend, not a broken object. ``discard()`` before close
    (an error while writing) sends nothing."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, text: bool = False):
        super().__init__()
        self.fs, self.path, self.text, self.discarded = fs, path, text, False

    def write(self, data) -> int:  # type: ignore[override]
        return super().write(data.encode("utf-8") if isinstance(data, str) else data)

    def discard(self) -> None:
        self.discarded = True

    def __exit__(self, exc_type, *rest: Any) -> None:  # type: ignore[override]
        if exc_type is not None:
            self.discard()  # what was written before the error is not an object anyone should see
        self.close()

    def close(self) -> None:
        if not self.closed and not self.discarded:
            retry(self.fs.pipe_file, self.path, self.getvalue(), what="write")
        super().close()

    def __del__(self) -> None:
        self.discarded = True  # never closed by its writer (an error, interpreter exit): nothing is sent
        super().__del__()


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem (rename is atomic, append works, files can be memory-mapped)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def is_url(path: str) -> bool:
    """True for a URL with a protocol other than the local filesystem's."""
    proto = path.split("://", 1)[0] if "://" in path else ""
    return bool(proto) and proto not in ("file", "local")


