"""Dolma output: documents, attribute files with the same rows in the same order, per-document stats, markers.

Layout under OUT (``<part>`` = ``<input file key>-<first ordinal of its range, 6 digits>``):

    documents/<source>/<part>.jsonl.gz             kept documents {id, text, source, added, created, metadata}
    attributes/<set>/<source>/<part>.jsonl.gz      {id, source, attributes: {<set>__<tagger>__<key>: [[s, e, v]]}}
    stats/docs/<part>.parquet                      one row per input document, kept or not: fate, reason, scores
    _parts/<part>.json                             completion marker, written last, after the files are durable

Why parts are ranges of record ordinals: part ``k`` of an input file holds the documents read from its records
``[k*n, (k+1)*n)`` (``n`` = input.docs_per_block: a part is one reader block), in ordinal order, whatever blocks
Ray merged or cut on the way (Ray shapes blocks by their size in memory, which changes with the steps, the Ray
version, ray.target_max_block_bytes and the cluster's size). So a part's name and bytes are a function of the
input alone: reruns rewrite the same names with the same bytes (zstd/gzip with no timestamps, keys in fixed
order), a retried task overwrites its own parts instead of adding a second copy, and a resumed run can tell
from the name which records a finished part holds. Every file is written under a temporary name and renamed;
the marker is the last write, so a part without a marker is incomplete.

Ray merges whole reader blocks, so a block usually holds whole parts, written at once. A part Ray cut (a block
over 1.5x ray.target_max_block_bytes, or split for parallelism) arrives in pieces: each piece is kept under
``_work/_fragments/<part>/`` and whichever writer completes the part (it counts the distinct ordinals against
the part's record count every row carries) writes it.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import uuid
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard
from isal import igzip

from curate import failpoints, schema, storage

SUMMARY_SCHEMA = pa.schema(
    [
        ("part", pa.string()),
        ("file", pa.string()),
        ("first_ord", pa.int64()),
        ("last_ord", pa.int64()),
        ("rows", pa.int64()),
        ("kept", pa.int64()),
        ("kept_chars", pa.int64()),
        ("counts", pa.string()),  # JSON {"<step>|<fate>|<reason>": n}
        ("edits", pa.string()),  # JSON {"<step>|<rule>": [documents, spans, characters]} (edit steps)
    ]
)


def edit_counts(t: pa.Table) -> dict[str, list[int]]:
    """Per edit step and rule, the documents it edited and the spans and characters it cut or replaced, from the
    rows' ``_edits`` records (every row: a document edited, then dropped by a later step, was still edited)."""
    out: dict[str, list[int]] = {}
    if schema.EDITS not in t.column_names:
        return out
    for rec in t.column(schema.EDITS).to_pylist():
        if not rec:
            continue
        for step, rules in json.loads(rec).items():
            for rule, r in rules.items():
                acc = out.setdefault(f"{step}|{rule}", [0, 0, 0])
                acc[0] += 1
                acc[1] += int(r["spans"])
                acc[2] += int(r["chars"])
    return dict(sorted(out.items()))


def atomic_write(url: str, data: bytes) -> None:
    """Write-then-rename on local disks (fsync first); object stores publish a whole object on close."""
    fs, path = storage.url_to_fs(url)
    parent = posixpath.dirname(path)
    failpoints.io_error(path)
    if storage.is_local(fs):
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:  # a full or read-only disk: leave no half-written file, not even a temporary
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError) and e.errno is not None:
                raise OSError(e.errno, e.strerror, path) from e  # name the file, not its temporary
            raise
    else:
        fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)


def compress(data: bytes, codec: str, threads: int = 1) -> bytes:
    """zstd level 3 in zstd's multi-threaded format (threads >= 1), whose bytes do not depend on the thread count,
    so a writer may use more threads without changing its output; gzip through ISA-L (``isal``, level 3 of its
    0-3) without a timestamp: plain gzip any reader takes, 8.7x faster than zlib level 6 for 6% more bytes
    (measured on 9.5 MB of web-text JSONL: 277 vs 32 MB/s on one core, 0.484 vs 0.455 of the input). zlib level 6
    was two thirds of the writer's time, and the writer compresses every document and attribute a run keeps."""
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=3, threads=max(1, threads)).compress(data)
    return igzip.compress(data, compresslevel=3, mtime=0)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a .jsonl.zst / .jsonl.gz file this writer produced (for inspect, tokstats and tests); a local
    path or a URL."""
    with storage.open(str(path), "rb") as f:
        raw = f.read()
    data = zstandard.ZstdDecompressor().stream_reader(raw).read() if str(path).endswith(".zst") \
        else gzip.decompress(raw)
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def _scalar(v: Any) -> float | None:
    """An attribute value as Dolma's schema types it (a float); non-finite numbers and nulls are no span."""
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _spans(v: list | None) -> list[list]:
    """Spans as Dolma's attribute schema wants them, ``[int start, int end, float value]`` (Arrow holds them as
    float lists; dolma's Rust mixer unwraps the offsets as integers)."""
    if not v:
        return []
    return [[int(s[0]), int(s[1]), float(s[2]) if len(s) > 2 and s[2] is not None else 1.0] for s in v]


def part_groups(table: pa.Table, keys: dict[str, str], docs_per_part: int) -> dict[str, np.ndarray]:
    """Part name -> the rows of ``table`` in that part (in table order). See the module docstring."""
    files = table.column(schema.FILE).to_pylist()
    first = (table.column(schema.ORD).to_numpy() // docs_per_part) * docs_per_part
    groups: dict[str, list[int]] = {}
    for i, (f, o) in enumerate(zip(files, first.tolist())):
        groups.setdefault(part_name(keys.get(f, posixpath.basename(f)), o), []).append(i)
    return {name: np.asarray(idx, dtype=np.int64) for name, idx in groups.items()}


def part_name(key: str, first_ord: int) -> str:
    return f"{key}-{first_ord:06d}"


def in_part_order(t: pa.Table) -> pa.Table:
    """Rows by ordinal; rows a step created right after their parent, in the order they were made (a stable sort:
    the order within a part must not depend on how Ray cut the blocks)."""
    ords = t.column(schema.ORD).to_numpy()
    order = np.argsort(ords, kind="stable")
    return t if (order == np.arange(len(order))).all() else t.take(order)


def _distinct_ords(t: pa.Table) -> int:
    return len(np.unique(t.column(schema.ORD).to_numpy()))


def _part_rows(t: pa.Table) -> int:
    """Records in the part, as the reader stamped them (rows a step created carry none)."""
    if schema.PART_ROWS not in t.column_names:
        return 0
    return int(pc.max(t.column(schema.PART_ROWS)).as_py() or 0)


class DolmaWriter:
    """Writes one part per (input file, block); returns one summary row per part for the driver's stats."""

    def __init__(self, out_dir: str, source: str, codec: str, added: str | None, keys: dict[str, str],
                 write_doc_stats: bool = True, write_documents: bool = True, docs_per_part: int = 1000):
        self.out_dir = out_dir.rstrip("/")
        self.source = source
        self.codec = codec
        self.ext = ".jsonl.zst" if codec == "zstd" else ".jsonl.gz"
        self.added = schema.canonical_time(added)
        if added and not self.added:
            raise ValueError(f"output.added: {added!r} is not an ISO-8601 time")
        self.keys = keys
        self.write_doc_stats = write_doc_stats
        self.write_docs = write_documents  # False when a sharding step already wrote them
        self.docs_per_part = docs_per_part

    def __call__(self, table: pa.Table) -> pa.Table:
        if table.num_rows == 0:
            return SUMMARY_SCHEMA.empty_table()
        summaries = []
        for part, idx in sorted(part_groups(table, self.keys, self.docs_per_part).items()):
            t = in_part_order(table.take(idx))
            if _distinct_ords(t) < _part_rows(t):  # a piece of a part Ray cut: whole once every piece is here
                t = self._add_fragment(t, part)
            if t is not None:
                summaries.append(self._write_part(t, part))
        return pa.Table.from_pylist(summaries, schema=SUMMARY_SCHEMA)

    def _add_fragment(self, t: pa.Table, part: str) -> pa.Table | None:
        """Keep a piece of a part; if the pieces now on disk make the whole part, return it (in part order)."""
        from curate.checkpoint import files_under, read_table, write_table

        ords = t.column(schema.ORD).to_numpy()
        folder = f"{self.out_dir}/_work/_fragments/{part}"
        write_table(f"{folder}/{int(ords.min()):09d}-{int(ords.max()):09d}.parquet", t)
        pieces = [read_table(f"{folder}/{name}") for name in files_under(folder, ".parquet")]
        whole = pa.concat_tables(pieces, promote_options="default")
        return in_part_order(whole) if _distinct_ords(whole) >= _part_rows(whole) else None

    def finish_fragments(self, partial: bool) -> list[dict[str, Any]]:
        """At the end of a run (driver): write parts whose pieces are all on disk but that no writer completed,
        which happens only to the parts `--limit` cut (``partial``); anything else left is a bug, not a part to
        drop silently."""
        from curate.checkpoint import files_under, read_table

        root = f"{self.out_dir}/_work/_fragments"
        by_part: dict[str, list[str]] = {}
        for rel in files_under(root, ".parquet"):
            by_part.setdefault(posixpath.dirname(rel), []).append(rel)
        fs, parts_dir = storage.url_to_fs(f"{self.out_dir}/_parts")
        out = []
        for part, names in sorted(by_part.items()):
            if fs.exists(f"{parts_dir}/{part}.json"):
                continue
            t = in_part_order(pa.concat_tables([read_table(f"{root}/{n}") for n in names],
                                               promote_options="default"))
            if not partial and _distinct_ords(t) < _part_rows(t):
                raise RuntimeError(f"part {part}: {_distinct_ords(t)} of {_part_rows(t)} records reached the writer")
            out.append(self._write_part(t, part))
        return out

    def _write_part(self, t: pa.Table, part: str) -> dict[str, Any]:
        ords = t.column(schema.ORD).to_numpy()
        file = t.column(schema.FILE)[0].as_py()
        fate = t.column(schema.FATE)
        kept_mask = pc.is_null(fate)
        kept = t.filter(kept_mask)
        written: list[str] = []

        attr_cols = [c for c in t.column_names if schema.is_attribute(c)]
        if kept.num_rows and self.write_docs:
            written.append(self.write_documents(kept, part))
            written.extend(self.write_attributes(kept, part, attr_cols))
        written.extend(self.write_rejects(t, part))
        if self.write_doc_stats:
            written.append(self._write_doc_stats(t, part, attr_cols))

        counts: Counter = Counter()
        born = t.column(schema.BORN).to_pylist() if schema.BORN in t.column_names else [None] * t.num_rows
        for b, step, f, reason in zip(born, t.column(schema.STEP).to_pylist(), fate.to_pylist(),
                                      t.column(schema.REASON).to_pylist()):
            # key: born-step | fate-step | fate | reason (born empty: read from the input)
            counts[f"{b or ''}|{step}|{f}|{reason}" if f else f"{b or ''}|||kept"] += 1
        kept_chars = int(pc.sum(pc.utf8_length(kept.column("text"))).as_py() or 0) \
            if kept.num_rows else 0
        summary = {
            "part": part, "file": file, "first_ord": int(ords.min()), "last_ord": int(ords.max()),
            "rows": t.num_rows, "kept": kept.num_rows, "kept_chars": kept_chars,
            "counts": json.dumps(dict(sorted(counts.items()))),
        }
        edits = edit_counts(t)
        if edits:
            summary["edits"] = json.dumps(edits)
        marker = {**summary, "counts": dict(sorted(counts.items())), **({"edits": edits} if edits else {}),
                  "files": written}
        atomic_write(f"{self.out_dir}/_parts/{part}.json", (json.dumps(marker, indent=1) + "\n").encode())
        if failpoints.armed():
            fs, root = storage.url_to_fs(f"{self.out_dir}/_parts")
            failpoints.hit("write:part", len(fs.find(root)))
        return summary

    def document_lines(self, kept: pa.Table) -> list[bytes]:
        """One Dolma document line per row (newline included), keys in a fixed order."""
        lines = []
        for rid, text, src, created, meta in zip(*(kept.column(c).to_pylist() for c in
                                                   ("id", "text", "source", "created", "metadata"))):
            # `added` and `created` on every document (datasets and dolma's schema expect both): a source without
            # a date of its own (or one that does not parse, kept in metadata.source_created) gets the run's
            # `added`, the latest it can have been created
            when = schema.canonical_time(created)
            d = {"id": rid, "text": text, "source": src or self.source, "added": self.added,
                 "created": when or self.added}
            d["metadata"] = orjson.loads(meta) if meta else {}
            if created and not when:
                d["metadata"]["source_created"] = created
            lines.append(orjson.dumps(d, option=orjson.OPT_APPEND_NEWLINE))
        return lines

    def attribute_lines(self, kept: pa.Table, attr_cols: list[str]) -> dict[str, list[bytes]]:
        """Per attribute set, one line per row (same rows, same order as the documents): span attributes with
        integer offsets, scalars as one span over the whole text, nulls as no span. Every value is a float, as
        Dolma's attribute schema types it."""
        by_set: dict[str, list[str]] = {}
        for c in attr_cols:
            by_set.setdefault(schema.attribute_set(c), []).append(c)
        ids = kept.column("id").to_pylist()
        srcs = [s or self.source for s in kept.column("source").to_pylist()]
        lengths = pc.utf8_length(kept.column("text")).to_pylist()
        out = {}
        for aset, cols in sorted(by_set.items()):
            values = {c: kept.column(c).to_pylist() for c in cols}
            is_span = {c: pa.types.is_list(kept.schema.field(c).type) for c in cols}
            lines = []
            for i, (rid, src) in enumerate(zip(ids, srcs)):
                attrs = {}
                for c in cols:
                    v = values[c][i]
                    if is_span[c]:
                        attrs[c] = _spans(v)
                    else:
                        v = _scalar(v)
                        attrs[c] = [[0, lengths[i] or 0, v]] if v is not None else []
                lines.append(orjson.dumps({"id": rid, "source": src, "attributes": attrs},
                                          option=orjson.OPT_APPEND_NEWLINE))
            out[aset] = lines
        return out

    def write_documents(self, kept: pa.Table, part: str) -> str:
        rel = f"documents/{self.source}/{part}{self.ext}"
        atomic_write(f"{self.out_dir}/{rel}", compress(b"".join(self.document_lines(kept)), self.codec))
        return rel

    def write_attributes(self, kept: pa.Table, part: str, attr_cols: list[str]) -> list[str]:
        out = []
        for aset, lines in self.attribute_lines(kept, attr_cols).items():
            rel = f"attributes/{aset}/{self.source}/{part}{self.ext}"
            atomic_write(f"{self.out_dir}/{rel}", compress(b"".join(lines), self.codec))
            out.append(rel)
        return out

    def write_rejects(self, t: pa.Table, part: str) -> list[str]:
        """Marked rows that kept their text (steps with ``keeps_rejected_text``): one JSON line each with the
        step, reason, detail (a JSON object when the step wrote one) and text, under OUT/rejects/<step>/."""
        has_text = pc.and_(pc.is_valid(t.column(schema.FATE)), pc.is_valid(t.column("text")))
        if not pc.any(has_text).as_py():
            return []
        rej = t.filter(has_text)
        by_step: dict[str, list[bytes]] = {}
        for row in rej.select(["id", "source", "text", "metadata", schema.STEP, schema.REASON,
                               schema.DETAIL]).to_pylist():
            detail = row[schema.DETAIL]
            try:
                detail = orjson.loads(detail) if detail and detail.startswith("{") else detail
            except ValueError:
                pass
            line = {"id": row["id"], "source": row["source"], "step": row[schema.STEP],
                    "reason": row[schema.REASON], "detail": detail, "text": row["text"],
                    "metadata": orjson.loads(row["metadata"]) if row["metadata"] else {}}
            by_step.setdefault(row[schema.STEP], []).append(orjson.dumps(line) + b"\n")
        out = []
        for step, lines in sorted(by_step.items()):
            rel = f"rejects/{step.replace('#', '_')}/{part}{self.ext}"
            atomic_write(f"{self.out_dir}/{rel}", compress(b"".join(lines), self.codec))
            out.append(rel)
        return out

    def _write_doc_stats(self, t: pa.Table, part: str, attr_cols: list[str]) -> str:
        # provenance and language out of the metadata JSON: what a dashboard shows for a dropped document
        urls, langs, record_ids, offsets = [], [], [], []
        for meta in t.column("metadata").to_pylist():
            try:
                d = orjson.loads(meta) if meta else {}
                d = d if isinstance(d, dict) else {}
            except ValueError:
                d = {}
            urls.append(d.get("url") if isinstance(d.get("url"), str) else None)
            langs.append(d.get("language") if isinstance(d.get("language"), str) else None)
            record_ids.append(d.get("warc_record_id") if isinstance(d.get("warc_record_id"), str) else None)
            offsets.append(d.get("warc_offset") if isinstance(d.get("warc_offset"), int) else None)
        scalar_attrs = [c for c in attr_cols if not pa.types.is_nested(t.schema.field(c).type)]
        stat_cols = [c for c in t.column_names if c.startswith(schema.STAT_PREFIX)]
        cols = {
            "id": t.column("id"),
            "file": t.column(schema.FILE),
            "ord": t.column(schema.ORD),
            "url": pa.array(urls, pa.string()),
            "record_id": pa.array(record_ids, pa.string()),
            "offset": pa.array(offsets, pa.int64()),
            "language": pa.array(langs, pa.string()),
            "fate": pc.coalesce(t.column(schema.FATE), pa.scalar("kept")),
            "born": t.column(schema.BORN) if schema.BORN in t.column_names else pa.nulls(t.num_rows, pa.string()),
            "step": t.column(schema.STEP),
            "reason": t.column(schema.REASON),
            "detail": t.column(schema.DETAIL),
            "chars": pc.utf8_length(t.column("text")),
            # what edit steps cut or replaced (JSON: step -> rule -> spans, chars, the first pieces that went)
            "edits": t.column(schema.EDITS) if schema.EDITS in t.column_names else pa.nulls(t.num_rows, pa.string()),
        }
        for c in scalar_attrs:
            cols[c] = t.column(c)
        for c in stat_cols:
            cols[c[len(schema.STAT_PREFIX):]] = t.column(c)
        table = pa.table(cols)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        rel = f"stats/docs/{part}.parquet"
        atomic_write(f"{self.out_dir}/{rel}", sink.getvalue().to_pybytes())
        return rel
