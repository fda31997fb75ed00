"""`curate export`: a finished run's tokens in other formats, the same bytes `shard` writes during a run.

The run's own token ids are read back (the dolma layout: ``tokens/part-<n>-00000.npy`` and its index), never
re-tokenized, so the ids, BOS/EOS and document boundaries are exactly those of the run. Provenance (each
document's source and input file) comes from the documents files and the per-document stats.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from curate import storage
from curate.writer import atomic_write, read_jsonl
from operators.shard import formats as fmt
from operators.shard.tokens import parse_index, part_files


class ExportError(ValueError):
    """A run that cannot be exported (no manifest, no dolma token files): one line for the user."""


def _read(url: str) -> bytes:
    with storage.open(url, "rb") as f:
        return f.read()


def _files_by_id(out: str) -> dict[str, str]:
    """Input file of every document id, from the per-document stats (stats/docs/*.parquet)."""
    fs, root = storage.url_to_fs(f"{out}/stats/docs")
    found: dict[str, str] = {}
    for path in sorted(fs.glob(f"{root}/*.parquet")):
        with fs.open(path, "rb") as f:
            t = pq.read_table(f, columns=["id", "file"])
        found.update(zip(t.column("id").to_pylist(), t.column("file").to_pylist()))
    return found


def _shard(out: str, manifest: dict[str, Any], shard: dict[str, Any], files_by_id: dict[str, str]
           ) -> fmt.ShardTokens:
    n = shard["shard"]
    npy, index = part_files(n)
    if npy not in shard["files"]:
        raise ExportError(f"{out}: shard {n} has no dolma token files (the run's shard `formats` must include "
                          "dolma to export from it)")
    tokens = np.frombuffer(_read(f"{out}/{npy}"), dtype=manifest["token_dtype"])
    rows = parse_index(_read(f"{out}/{index}"))
    ids = [r[2] for r in rows]
    offsets = np.array([0] + [r[1] for r in rows], dtype=np.int64)
    docs_rel = rows[0][3] if rows else None
    sources, files = [], []
    if docs_rel:
        for d, did in zip(read_jsonl(f"{out}/{docs_rel}"), ids):
            if d["id"] != did:
                raise ExportError(f"{out}/{docs_rel}: documents and token index disagree at {did}")
            sources.append(d.get("source"))
            parent = (d.get("metadata") or {}).get("parent_id") or did
            files.append(files_by_id.get(parent))
    return fmt.ShardTokens(n=n, ids=ids, sources=sources, files=files, tokens=tokens, offsets=offsets,
                           vocab_size=manifest["tokenizer"]["vocab_size"])


def export_run(out: str, formats: list[str], to: str | None = None) -> list[str]:
    """Write ``formats`` for the run at ``out`` under ``to`` (default ``out``); returns the files written."""
    out = out.rstrip("/")
    dest = (to or out).rstrip("/")
    try:
        manifest = json.loads(_read(f"{out}/manifest.json"))
    except FileNotFoundError:
        raise ExportError(f"{out}/manifest.json: not found (a run whose last step is `shard`)") from None
    files_by_id = _files_by_id(out)
    shards = sorted(manifest["shards"], key=lambda s: s["shard"])
    written: list[str] = []
    index: list[dict[str, Any]] = []
    new_shards = []
    for shard in shards:
        st = _shard(out, manifest, shard, files_by_id)
        files, entries = fmt.write_shard(st, formats)
        for rel, data in files.items():
            atomic_write(f"{dest}/{rel}", data)
        written += files
        index.append(entries)
        new_shards.append({**shard, "files": list(files)})
    for rel, data in fmt.index_files(formats, index, manifest["tokenizer"]["vocab_size"]).items():
        atomic_write(f"{dest}/{rel}", data)
        written.append(rel)
    entry = fmt.manifest_entry(formats, new_shards, manifest["tokenizer"]["vocab_size"], manifest["totals"])
    if dest == out:  # beside the run's own files: the manifest lists them too
        manifest["formats"] = {**manifest.get("formats", {}), **entry}
        atomic_write(f"{out}/manifest.json", (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    else:
        atomic_write(f"{dest}/export.json", (json.dumps({"from": out, "formats": entry}, indent=1) + "\n").encode())
    return written
