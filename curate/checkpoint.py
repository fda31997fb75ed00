"""Resume: what a run stores so that a killed run can go on where it stopped, and refuse to when it should not.

Three kinds of record, each written only after what it vouches for is on disk (files are written under a
temporary name, fsynced and renamed, so a file under its final name is whole):

* ``OUT/_run.json`` — the run's identity: the config (as validated; output path left out), the input listing
  (URL, size, modification time) and ``added``. ``--resume`` refuses a changed config or input and names the
  change; it reuses ``added`` so the resumed documents carry the same bytes.
* ``OUT/_parts/<part>.json`` — the writer's per-part marker (documents, attributes, stats of one input block).
  A resumed run does not process those blocks again; their counts come from the markers.
* ``OUT/_work/<step>/...`` — checkpoints of whole-dataset steps: ``input/<part>.parquet`` (the step's input,
  one file per block, so a resume reads blocks back instead of re-extracting them) and ``_stages/<stage>.json``
  for each finished internal stage (signatures, decisions, thresholds, token runs, shard groups), with the
  stage's files under ``<stage>/``. A stage without its marker is redone from an emptied folder.

``_work`` is removed when the run ends well; ``_run.json`` and ``_parts`` stay (a resume of a finished run
does nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import failpoints, storage
from curate.files import file_sha256
from curate.writer import atomic_write

RUN_FILE = "_run.json"


class ResumeError(ValueError):
    """A resume that cannot go on (nothing to resume, or the config or input changed): one line for the user."""


# ---------------------------------------------------------------------------------------------- identity
def input_listing(files: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """(url, size, mtime) of every input file: what `--resume` compares to notice a changed input. A local file
    that a submitted job brought in its working dir also gets its sha256: every cluster unpacks the working dir
    anew, with new modification times, and a resume on another cluster compares the content instead."""
    shipped = _job_working_dir()
    out = []
    for url, _key in files:
        fs, path = storage.url_to_fs(url)
        try:
            info = fs.info(path)
        except OSError:
            info = {}
        mtime = info.get("mtime", info.get("LastModified", info.get("ETag")))
        entry = {"url": url, "size": info.get("size"), "mtime": str(mtime) if mtime is not None else None}
        if shipped and storage.is_local(fs) and os.path.abspath(path).startswith(shipped + os.sep):
            entry["sha256"] = file_sha256(path)
        out.append(entry)
    return out


def _job_working_dir() -> str | None:
    """The folder a submitted job's working dir was unpacked into (the driver runs in it), else None."""
    from curate.runner import submitted_job_env

    env = submitted_job_env()
    return os.path.abspath(os.getcwd()) if env and env.get("working_dir") else None


def _comparable(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What of an input listing must be equal: a file with its content's hash is compared by hash and size, not
    by modification time."""
    return [{k: v for k, v in f.items() if not (k == "mtime" and f.get("sha256"))} for f in listing]


def identity(config: dict[str, Any], files: list[tuple[str, str]], limit: int | None) -> dict[str, Any]:
    """What must be equal for a resume to produce the bytes an uninterrupted run would."""
    listing = input_listing(files)
    digest = hashlib.sha256(json.dumps([config, _comparable(listing), limit], sort_keys=True).encode()).hexdigest()
    return {"hash": digest, "config": config, "inputs": listing, "limit": limit}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identities (config keys, then input files)."""
    out = []
    a, b = _flatten(old.get("config", {})), _flatten(new.get("config", {}))
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            out.append(f"config {k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}")
    if old.get("limit") != new.get("limit"):
        out.append(f"--limit: {old.get('limit')} -> {new.get('limit')}")
    fa = {f["url"]: f for f in old.get("inputs", [])}
    fb = {f["url"]: f for f in new.get("inputs", [])}
    for url in sorted(set(fa) | set(fb)):
        if url not in fb:
            out.append(f"input removed: {url}")
        elif url not in fa:
            out.append(f"input added: {url}")
        elif _comparable([fa[url]]) != _comparable([fb[url]]):
            what = [f"{k} {fa[url].get(k)} -> {fb[url].get(k)}" for k in ("size", "mtime", "sha256")
                    if _comparable([fa[url]])[0].get(k) != _comparable([fb[url]])[0].get(k)]
            out.append(f"input changed: {url} ({', '.join(what)})")
    return out


def load_run(out_dir: str) -> dict[str, Any] | None:
    fs, path = storage.url_to_fs(f"{out_dir}/{RUN_FILE}")
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def save_run(out_dir: str, run: dict[str, Any]) -> None:
    atomic_write(f"{out_dir}/{RUN_FILE}", (json.dumps(run, indent=1, sort_keys=True) + "\n").encode())


def check_resume(out_dir: str, new: dict[str, Any]) -> dict[str, Any]:
    """The stored run record if ``new`` may resume it; else ResumeError naming what changed."""
    old = load_run(out_dir)
    if old is None:
        raise ResumeError(f"nothing to resume at {out_dir} (no {RUN_FILE}); run without --resume")
    if old.get("hash") != new["hash"]:
        diff = changes(old, new) or ["the run record differs (written by another curate version?)"]
        more = f" (+{len(diff) - 5} more)" if len(diff) > 5 else ""
        raise ResumeError(f"cannot resume {out_dir}: " + "; ".join(diff[:5]) + more +
                          " — rerun with --overwrite to start over")
    return old


# ---------------------------------------------------------------------------------------------- markers
def done_parts(out_dir: str) -> dict[str, dict[str, Any]]:
    """Part name -> marker of every part the writer finished (markers are the last file a part writes)."""
    fs, root = storage.url_to_fs(f"{out_dir}/_parts")
    out = {}
    for rel in files_under(f"{out_dir}/_parts", ".json"):
        with fs.open(f"{root}/{rel}", "rb") as f:
            out[rel[:-len(".json")]] = json.loads(f.read())
    return out


def files_under(url: str, suffix: str) -> list[str]:
    """Paths relative to ``url`` of the finished files (not temporary ones) below it that end in ``suffix``.
    Part names hold the input's relative path, so they may be nested folders."""
    fs, root = storage.url_to_fs(url)
    if not fs.isdir(root):
        return []
    found = [p[len(root.rstrip("/")) + 1:] for p in fs.find(root)]
    return sorted(r for r in found if r.endswith(suffix) and not posixpath.basename(r).startswith("."))


def remove_temporaries(url: str) -> int:
    """Delete the write-then-rename temporaries (``.tmp-*``, see ``writer.atomic_write``) a killed run left below
    ``url``: readers skip them, but the output would not be the bytes of an uninterrupted run. Local disks only
    (an object store publishes whole objects and has none). Returns how many were removed."""
    fs, root = storage.url_to_fs(url)
    if not storage.is_local(fs) or not fs.isdir(root):
        return 0
    stale = [p for p in fs.find(root) if posixpath.basename(p).startswith(".tmp-")]
    for p in stale:
        fs.rm_file(p)
    return len(stale)


def remove(url: str) -> None:
    """Delete a folder (or file) and everything under it, if it exists."""
    fs, path = storage.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write_table(url: str, table: pa.Table) -> None:
    """One block as a Parquet file under its final name, atomically (the schema travels with it). lz4: these
    files are written on every uninterrupted run and read only by a resume, so writing must be cheap (zstd made
    minhash signatures, random 32-bit numbers, cost seconds to compress for nothing)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="lz4")
    atomic_write(url, sink.getvalue().to_pybytes())


def block_name(block: pa.Table) -> str:
    """A name that is a function of the block's first column: a retried task rewrites its own file instead of
    adding a second copy of the block."""
    h = hashlib.blake2b(digest_size=12)
    h.update(str(block.num_rows).encode())
    if block.num_columns:
        for chunk in block.column(0).chunks:
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(buf)
    return h.hexdigest()


def read_table(url: str) -> pa.Table:
    with storage.open(url, "rb") as f:
        return pq.read_table(f)


def read_blocks(urls: list[str]):
    """The Parquet files as a materialised Ray Dataset, one block per file (block boundaries name the output
    parts, so a block read back must be exactly the block that was written)."""
    import ray
    import ray.data

    task = ray.remote(num_cpus=1)(read_table)
    return ray.data.from_arrow_refs([task.remote(u) for u in urls])


@dataclass(frozen=True)
class Checkpoints:
    """Checkpoints of one whole-dataset step under ``OUT/_work/<step>/`` (the operator sees it as ``ctx``)."""

    out_dir: str
    step: str
    stats_actor: Any = None
    enabled: bool = True

    @property
    def root(self) -> str:
        return f"{self.out_dir}/_work/{self.step}"

    def stage_dir(self, stage: str) -> str:
        return f"{self.root}/{stage}"

    def _marker(self, stage: str) -> str:
        return f"{self.root}/_stages/{stage}.json"

    def load(self, stage: str) -> dict[str, Any] | None:
        fs, path = storage.url_to_fs(self._marker(stage))
        if not self.enabled or not fs.exists(path):
            return None
        with fs.open(path, "rb") as f:
            return json.loads(f.read())

    def mark(self, stage: str, value: Any) -> None:
        if self.enabled:
            atomic_write(self._marker(stage), (json.dumps({"value": value}) + "\n").encode())
        failpoints.hit(f"{self.step}:{stage}")

    def reused(self, stage: str) -> None:
        from curate.stats import send

        send(self.stats_actor, "add_reused", f"{self.step}:{stage}")

    def clear(self, stage: str) -> None:
        """Empty a stage's folder before (re)doing it: a killed attempt may have left files in it."""
        remove(self.stage_dir(stage))

    def value(self, stage: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` (JSON-able result, any files under stage_dir) once: a resume returns the stored result."""
        found = self.load(stage)
        if found is not None:
            self.reused(stage)
            return found["value"]
        self.clear(stage)
        result = compute()
        self.mark(stage, result)
        return result

    def dataset(self, stage: str, compute: Callable[[], Any]):
        """A materialised Dataset stage: written one Parquet file per block while it is computed; a resume reads
        the blocks back instead of computing them."""
        stage_url = self.stage_dir(stage)
        found = self.load(stage)
        if found is not None:
            self.reused(stage)
            return read_blocks([f"{stage_url}/{name}" for name in found["value"]])
        self.clear(stage)
        ds = compute()
        if not self.enabled:
            return ds.materialize()

        def save(block: pa.Table) -> pa.Table:  # in the task that made the block: no second pass over the data
            write_table(f"{stage_url}/{block_name(block)}.parquet", block)
            return block

        ds = ds.map_batches(save, batch_format="pyarrow", batch_size=None, zero_copy_batch=True).materialize()
        self.mark(stage, files_under(stage_url, ".parquet"))
        return ds
