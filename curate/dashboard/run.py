"""A run's output as the dashboard reads it: small files read whole on each request, errors as one clear line.

Everything is read through ``curate.storage`` so a run on s3:// or gs:// reads like a local one. Nothing here
writes: the dashboard is read-only over the output.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from typing import Any, Iterator

import zstandard

from curate import storage


class RunError(Exception):
    """What the page shows instead of a view: the output is missing, half-written or not a curate run."""


class Run:
    """One output root (a local path or an fsspec URL), given on the command line and never by the page."""

    def __init__(self, root: str):
        self.root = root.rstrip("/") or "/"
        self.fs, self.path = storage.url_to_fs(self.root)
        self.proto = f"{self.root.split('://')[0]}://" if "://" in self.root else ""
        self._text_cache: dict[str, dict[str, Any]] = {}

    def _read(self, rel: str) -> bytes | None:
        path = f"{self.path}/{rel}"
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def stats(self) -> dict[str, Any]:
        """stats.json, checked enough that every view can trust its shape."""
        raw = self._read("stats.json")
        if raw is None:
            if not self.fs.exists(self.path):
                raise RunError(f"{self.root} does not exist (yet): start the run, or check the path")
            raise RunError(f"{self.root}/stats.json not found: not a curate output, or the run has not started")
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise RunError(f"{self.root}/stats.json is not valid JSON ({e}); it may be half-written") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or not isinstance(
                doc.get("totals"), dict) or "status" not in doc:
            raise RunError(f"{self.root}/stats.json is not a curate stats file (no status, steps or totals)")
        for s in doc["steps"]:
            if not isinstance(s, dict) or not {"step", "in", "out", "dropped", "errors"} <= set(s):
                raise RunError(f"{self.root}/stats.json: a step entry lacks step/in/out/dropped/errors")
        return doc

    def progress(self) -> tuple[list[dict[str, Any]], int]:
        """progress.jsonl lines, and how many lines could not be parsed (a line being appended, or damage)."""
        raw = self._read("stats/progress.jsonl")
        lines, bad = [], 0
        for line in (raw or b"").splitlines():
            try:
                d = json.loads(line)
                if isinstance(d, dict) and isinstance(d.get("elapsed_s"), (int, float)):
                    lines.append(d)
                    continue
            except ValueError:
                pass
            bad += 1
        return lines, bad

    def manifest(self) -> dict[str, Any] | None:
        raw = self._read("manifest.json")
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def doc_stats_files(self) -> list[tuple[str, int]]:
        """(path, size) of every stats/docs/*.parquet, sorted: the index ingests what it has not seen."""
        root = f"{self.path}/stats/docs"
        try:
            found = self.fs.find(root, detail=True)
        except FileNotFoundError:
            return []
        return sorted((p, int(d.get("size") or 0)) for p, d in found.items() if p.endswith(".parquet"))

    def open(self, path: str) -> io.IOBase:
        return self.fs.open(path, "rb")

    def document_files(self) -> list[str]:
        root = f"{self.path}/documents"
        try:
            return sorted(p for p in self.fs.find(root) if ".jsonl" in p.rsplit("/", 1)[-1])
        except FileNotFoundError:
            return []

    def document_text(self, doc_id: str, budget_s: float = 20.0) -> dict[str, Any]:
        """The text of a kept document, from documents/: its pieces (`<id>` or `<id>-part-<k>`, in part order).

        documents/ has no index by id (shards are ordered by id hash), so this scans the files, stopping when
        every piece is found (a piece's metadata says how many there are) or after ``budget_s`` seconds; the
        answer says which. Results are kept for the next request.
        """
        if doc_id in self._text_cache:
            return self._text_cache[doc_id]
        # the writer's lines start with {"id":"<id>" (orjson: no spaces, UTF-8 unescaped)
        exact = f'{{"id":{json.dumps(doc_id, ensure_ascii=False)},'.encode()
        prefix = f'{{"id":{json.dumps(doc_id + "-part-", ensure_ascii=False)[:-1]}'.encode()
        pieces: dict[int, str] = {}
        want: int | None = None
        t0, scanned, complete = time.monotonic(), 0, False
        for path in self.document_files():
            for line in _lines(self.fs, path):
                if not (line.startswith(exact) or line.startswith(prefix)):
                    continue
                d = json.loads(line)
                if d.get("id") == doc_id:
                    pieces[0], want = d.get("text", ""), 1
                else:
                    meta = d.get("metadata") or {}
                    pieces[int(meta.get("part", len(pieces)))] = d.get("text", "")
                    want = int(meta.get("parts") or 0) or None
            scanned += 1
            if want is not None and len(pieces) >= want:
                complete = True
                break
            if time.monotonic() - t0 > budget_s:
                break
        found = {"id": doc_id, "found": bool(pieces), "pieces": len(pieces), "complete": complete,
                 "text": "\n".join(pieces[k] for k in sorted(pieces)), "files_scanned": scanned}
        if complete or scanned == len(self.document_files()):
            self._text_cache[doc_id] = found
        return found


    def rejected_text(self, doc_id: str, step: str) -> dict[str, Any] | None:
        """A rejected document's text and check, from OUT/rejects/<step>/ (steps that keep their rejects), or None
        when the step kept none for it (most steps; rephrase past its `keep_rejects` bound)."""
        root = f"{self.path}/rejects/{step.replace('#', '_')}"
        try:
            files = sorted(p for p in self.fs.find(root) if ".jsonl" in p.rsplit("/", 1)[-1])
        except FileNotFoundError:
            return None
        exact = f'{{"id":{json.dumps(doc_id, ensure_ascii=False)},'.encode()
        for path in files:
            for line in _lines(self.fs, path):
                if line.startswith(exact):
                    return json.loads(line)
        return None


def _lines(fs: Any, path: str) -> Iterator[bytes]:
    with fs.open(path, "rb") as raw:
        if path.endswith(".gz"):
            stream: Any = gzip.GzipFile(fileobj=raw)
        elif path.endswith(".zst"):
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        else:
            stream = raw
        yield from io.BufferedReader(stream, 1 << 20)
