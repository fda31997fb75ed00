"""shard: token-balanced Dolma shards, optional tokenized output (`dolma tokens` layout), a manifest, and
per-language tokenizer metrics. The last step of a pipeline: it writes the documents itself.

How (each stage distributed; documents move through one shuffle, only to reach their shard):

1. **tokenize + split** (per block): every live document is tokenized once. With ``max_doc_tokens``, a longer
   document is cut into pieces ``<id>-part-<k>`` at sentence boundaries (the span attribute named by
   ``spans_attribute``, e.g. the segmenter's), else at line breaks, else at spaces, else (a single "word" longer
   than the budget) at characters; each piece is re-tokenized, so counts are exact, and the pieces re-join to
   the original text. The token ids travel with the piece: nothing is tokenized twice.
2. **assign**: a small index (hash of the piece id, id, tokens) is sorted globally by Ray; per-block token sums
   give each block its offset, and a piece goes to shard ``(tokens before it) // tokens_per_shard``. So shards
   hold at most ``tokens_per_shard`` + one piece, at least ``tokens_per_shard`` - one piece (but the last), and
   the assignment depends only on the ids: reruns give identical shards.
3. **write**: pieces are hash-shuffled by shard; each shard is written by one task, in id-hash order:
   ``documents/<source>/shard-<n>.jsonl.zst``, ``attributes/<set>/<source>/shard-<n>.jsonl.zst`` (same rows,
   same order; span attributes clipped and shifted into each piece), and with ``write_tokens``
   ``tokens/part-<n>-00000.npy`` + ``.csv.gz``.

``manifest.json`` at the output root lists per shard the files, documents, characters, tokens, the language
histogram and the tokenizer identity, with totals; the step's stats carry tokenizer metrics per language.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from curate import dedup, schema
from curate.operator import DatasetOperator, Params, RunContext, register
from curate.tokenizers import load as load_tokenizer
from curate.tokens import TokStats, encode_part
from curate.writer import DolmaWriter, atomic_write

PIECE_TYPES = {"node": pa.int64(), "k": pa.int32(), "parts": pa.int32(), "start": pa.int64(), "end": pa.int64(),
               "h": pa.int64(), "piece_id": pa.string(), "tokens": pa.int64(), "ids": pa.list_(pa.uint32())}


class ShardParams(Params):
    tokenizer: str = Field("tiktoken:cl100k_base", description="tiktoken:<encoding> or hf:<tokenizer.json path>.")
    tokens_per_shard: int = Field(50_000_000, gt=0, description="Target tokens per shard.")
    max_doc_tokens: int | None = Field(None, gt=0, description="Split longer documents into parts that fit.")
    spans_attribute: str | None = Field(None, description="Span attribute with sentence boundaries to split at "
                                        "(e.g. segment__sentences); default: line breaks, then spaces.")
    write_tokens: bool = Field(True, description="Also write the tokenized output (dolma tokens layout).")
    bos: bool = Field(False, description="Prepend the tokenizer's BOS token to each document (tokenized output).")
    eos: bool = Field(True, description="Append the tokenizer's EOS token to each document (tokenized output).")
    partitions: int = Field(8, ge=1, description="Partitions of the shuffles.")
    metrics_docs: int = Field(200, ge=0, description="Documents per shard checked for the whole-word share.")


def id_hash(piece_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(piece_id.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def split_points(text: str, spans: list | None) -> list[int]:
    """Primary cut positions: ends of sentence spans, else after each line break."""
    if spans:
        cuts = sorted({int(s[1]) for s in spans if 0 < int(s[1]) < len(text)})
    else:
        cuts = [m.end() for m in re.finditer(r"\n+", text) if m.end() < len(text)]
    return cuts


def split_document(text: str, tok: Any, max_tokens: int, spans: list | None) -> list[tuple[int, int, list[int]]]:
    """Contiguous (start, end, ids) pieces covering the text, each with at most max_tokens tokens."""
    def segments(lo: int, hi: int, cuts: list[int]) -> list[tuple[int, int]]:
        inner = [c for c in cuts if lo < c < hi]
        bounds = [lo, *inner, hi]
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]

    def fit(seg: tuple[int, int], level: int) -> list[tuple[int, int]]:
        """Subdivide a segment until each part fits: spaces, then characters."""
        a, b = seg
        if len(tok.encode_batch([text[a:b]])[0]) <= max_tokens:
            return [seg]
        if level == 0:
            cuts = [m.end() for m in re.finditer(r"\s+", text[a:b])]
            subs = segments(a, b, [a + c for c in cuts])
            if len(subs) > 1:
                return [p for s in subs for p in fit(s, 1)]
        mid = a + (b - a) // 2  # a "word" longer than the budget: cut at characters
        return fit((a, mid), 2) + fit((mid, b), 2)

    segs = [p for s in segments(0, len(text), split_points(text, spans)) for p in fit(s, 0)]
    seg_tokens = tok.count([text[a:b] for a, b in segs])
    pieces: list[tuple[int, int, list[int]]] = []
    i = 0
    while i < len(segs):
        j, total = i, 0
        while j < len(segs) and total + seg_tokens[j] <= max_tokens:
            total += seg_tokens[j]
            j += 1
        j = max(j, i + 1)
        while True:  # exact count of the joined piece (BPE merges across segment borders can change it)
            ids = tok.encode_batch([text[segs[i][0]:segs[j - 1][1]]])[0]
            if len(ids) <= max_tokens or j == i + 1:
                break
            j -= 1
        pieces.append((segs[i][0], segs[j - 1][1], ids))
        i = j
    return pieces


INDEX_COLS = ["node", "k", "parts", "start", "end", "h", "piece_id", "tokens"]


class _Pieces:
    """Tokenize and split; the token ids go straight to per-input-file files (read back by the shard writer),
    so only the small index (no ids) goes through the global sort."""

    def __init__(self, p: ShardParams, file_index: dict[str, int], ids_dir: str):
        self.p, self.file_index, self.ids_dir = p, file_index, ids_dir

    def __call__(self, table: pa.Table) -> pa.Table:
        p = self.p
        tok = load_tokenizer(p.tokenizer)
        live = table.filter(pa.array(dedup.live_mask(table)))
        nodes = dedup.node_ids(live, self.file_index)
        texts = live.column("text").to_pylist()
        ids_all = tok.encode_batch(texts)
        spans = live.column(p.spans_attribute).to_pylist() if p.spans_attribute else [None] * len(texts)
        rows: dict[str, list] = {k: [] for k in PIECE_TYPES}
        for node, did, text, ids, sp in zip(nodes.tolist(), live.column("id").to_pylist(), texts, ids_all, spans):
            if p.max_doc_tokens and len(ids) > p.max_doc_tokens:
                pieces = split_document(text, tok, p.max_doc_tokens, sp)
            else:
                pieces = [(0, len(text), ids)]
            for k, (a, b, pids) in enumerate(pieces):
                pid = did if len(pieces) == 1 else f"{did}-part-{k}"
                for key, v in (("node", node), ("k", k), ("parts", len(pieces)), ("start", a), ("end", b),
                               ("h", id_hash(pid)), ("piece_id", pid), ("tokens", len(pids)), ("ids", pids)):
                    rows[key].append(v)
        ids = rows.pop("ids")
        table = pa.table({k: pa.array(v, PIECE_TYPES[k]) for k, v in rows.items()})
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.concatenate([np.asarray(x, dtype=np.uint32) for x in ids]) if ids else np.empty(0, np.uint32)
        id_col = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32)),
                                          pa.array(flat, pa.uint32()))
        dedup.write_by_file(table.select(["node", "k"]).append_column("ids", id_col), self.ids_dir)
        return table.select(INDEX_COLS)


def _range_of(h: np.ndarray, ranges: int) -> np.ndarray:
    """Equal-width ranges of the (uniform) signed 64-bit id hash, in order: a range partition without sampling."""
    return ((h.astype(np.float64) + 2.0 ** 63) * (ranges / 2.0 ** 64)).astype(np.int64).clip(0, ranges - 1)


def _with_range(ranges: int):
    def f(block: pa.Table) -> pa.Table:
        return block.append_column("range", pa.array(_range_of(block.column("h").to_numpy(), ranges)))
    return f


def _sort_block(block: pa.Table) -> pa.Table:
    """Rows of whole ranges, in global order: by range, then the id hash, id, node, piece."""
    if block.num_rows == 0:
        return block
    ids = np.array(block.column("piece_id").to_pylist(), dtype=object).astype(str)
    order = np.lexsort((block.column("k").to_numpy(), block.column("node").to_numpy(), ids,
                        block.column("h").to_numpy(), block.column("range").to_numpy()))
    return block.take(order)


def _range_sums(block: pa.Table) -> pa.Table:
    r = block.column("range").to_numpy()
    t = block.column("tokens").to_numpy()
    u = np.unique(r)
    return pa.table({"range": pa.array(u, pa.int64()), "tokens": pa.array([int(t[r == x].sum()) for x in u],
                                                                         pa.int64())})


class _Assign:
    def __init__(self, offsets: dict[int, int], per_shard: int):
        self.offsets, self.per_shard = offsets, per_shard

    def __call__(self, block: pa.Table) -> pa.Table:
        if block.num_rows == 0:
            return block.append_column("shard", pa.array([], pa.int64()))
        r = block.column("range").to_numpy()
        tokens = block.column("tokens").to_numpy()
        shard = np.empty(len(r), dtype=np.int64)
        for x in np.unique(r):  # rows of one range are contiguous and in order (_sort_block)
            m = r == x
            t = tokens[m]
            shard[m] = (self.offsets[int(x)] + np.cumsum(t) - t) // self.per_shard
        return block.append_column("shard", pa.array(shard))


class _Explode:
    """One row per piece with its shard, text slice, ids; attributes copied (spans clipped into the piece)."""

    def __init__(self, scratch: str, ids_dir: str, file_index: dict[str, int]):
        self.scratch, self.ids_dir, self.file_index = scratch, ids_dir, file_index

    def __call__(self, table: pa.Table) -> pa.Table:
        live = table.filter(pa.array(dedup.live_mask(table)))
        nodes = dedup.node_ids(live, self.file_index)
        dec = dedup.load_decisions(self.scratch, nodes)
        attr_cols = [c for c in live.column_names if schema.is_attribute(c)]
        cols = ["piece_id", "text", "source", "created", "metadata", "h", "shard", "ids", *attr_cols]
        if dec is None or live.num_rows == 0:
            return pa.table({c: pa.array([], _type(live, c)) for c in cols})
        row_of = {n: i for i, n in enumerate(nodes.tolist())}
        order = np.lexsort((dec.column("k").to_numpy(), dec.column("node").to_numpy()))
        dec = dec.take(order)
        ids_t = dedup.load_decisions(self.ids_dir, nodes)
        ids_t = ids_t.take(np.lexsort((ids_t.column("k").to_numpy(), ids_t.column("node").to_numpy())))
        if not (ids_t.column("node").equals(dec.column("node")) and ids_t.column("k").equals(dec.column("k"))):
            raise RuntimeError("token ids and shard assignments disagree (a partial earlier run in _work?)")
        src_rows = [row_of[n] for n in dec.column("node").to_pylist()]
        base = live.take(src_rows)
        starts, ends = dec.column("start").to_pylist(), dec.column("end").to_pylist()
        texts = [t[a:b] for t, a, b in zip(base.column("text").to_pylist(), starts, ends)]
        metas = []
        for m, k, parts, parent in zip(base.column("metadata").to_pylist(), dec.column("k").to_pylist(),
                                       dec.column("parts").to_pylist(), base.column("id").to_pylist()):
            d = json.loads(m) if m else {}
            if parts > 1:
                d.update(parent_id=parent, part=k, parts=parts)
            metas.append(json.dumps(d, ensure_ascii=False, sort_keys=True))
        out = {"piece_id": dec.column("piece_id"), "text": pa.array(texts, pa.string()), "source": base.column("source"),
               "created": base.column("created"), "metadata": pa.array(metas, pa.string()), "h": dec.column("h"),
               "shard": dec.column("shard"), "ids": ids_t.column("ids")}
        for c in attr_cols:
            col = base.column(c)
            if pa.types.is_list(col.type):  # spans: keep those inside the piece, shifted to its offsets
                clipped = []
                for spans, a, b in zip(col.to_pylist(), starts, ends):
                    clipped.append([[max(s[0], a) - a, min(s[1], b) - a, *s[2:]] for s in (spans or [])
                                    if s[1] > a and s[0] < b] if spans is not None else None)
                out[c] = pa.array(clipped, col.type)
            else:
                out[c] = col
        return pa.table(out)


def _type(t: pa.Table, c: str) -> pa.DataType:
    fixed = {"piece_id": pa.string(), "h": pa.int64(), "shard": pa.int64(), "ids": pa.list_(pa.uint32())}
    return fixed.get(c) or t.schema.field(c).type


class _ShardWriter:
    def __init__(self, p: ShardParams, ctx: RunContext):
        self.p, self.out_dir, self.source = p, ctx.out_dir, ctx.source
        self.writer = DolmaWriter(ctx.out_dir, ctx.source, ctx.compression, ctx.added, {})

    def __call__(self, block: pa.Table) -> pa.Table:
        p = self.p
        tok = load_tokenizer(p.tokenizer)
        rows = []
        shards = block.column("shard").to_numpy()
        for s in np.unique(shards):
            part = block.filter(pa.array(shards == s))
            order = np.lexsort((np.array(part.column("piece_id").to_pylist(), dtype=object).astype(str),
                                part.column("h").to_numpy()))
            part = part.take(order).rename_columns(["id" if c == "piece_id" else c for c in part.column_names])
            name = f"shard-{int(s):05d}"
            docs = part.drop_columns(["h", "shard", "ids"])
            files = [self.writer.write_documents(docs, name)]
            files += self.writer.write_attributes(docs, name, [c for c in docs.column_names if schema.is_attribute(c)])
            id_col = part.column("ids").combine_chunks()
            flat_ids = id_col.flatten().to_numpy()
            offsets = id_col.offsets.to_numpy().astype(np.int64)
            offsets = offsets - offsets[0]
            n_tokens = len(flat_ids)
            if p.write_tokens:
                data, index, _ = encode_part(flat_ids, offsets, part.column("id").to_pylist(), files[0],
                                             tok.vocab_size, tok.bos_id if p.bos else None,
                                             tok.eos_id if p.eos else None)
                atomic_write(f"{self.out_dir}/tokens/part-{int(s):05d}-00000.npy", data)
                atomic_write(f"{self.out_dir}/tokens/part-{int(s):05d}-00000.csv.gz", index)
                files += [f"tokens/part-{int(s):05d}-00000.npy", f"tokens/part-{int(s):05d}-00000.csv.gz"]
            langs = part.column("langid__lang").to_pylist() if "langid__lang" in part.column_names \
                else [None] * part.num_rows
            stats = TokStats()
            texts = part.column("text").to_pylist()
            lens = np.diff(offsets)
            for i, (lang, text) in enumerate(zip(langs, texts)):
                tids = flat_ids[offsets[i]:offsets[i + 1]]
                surf = tok.token_strings(tids.tolist()) if i < p.metrics_docs else None
                stats.add(lang, text, tids, surf, track_unique=False)
            lang_codes = np.array([x or "und" for x in langs], dtype=object)
            lang_of_token = np.repeat(lang_codes, lens)
            for lang in set(lang_codes.tolist()):
                stats.unique[lang].update(np.unique(flat_ids[lang_of_token == lang]).tolist())
            rows.append({"shard": int(s), "files": json.dumps(files), "documents": part.num_rows,
                         "characters": int(sum(len(t) for t in texts)), "tokens": n_tokens,
                         "languages": json.dumps(dict(sorted(Counter(x or "und" for x in langs).items()))),
                         "tokstats": json.dumps(stats.raw())})
        return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA) if rows else MANIFEST_SCHEMA.empty_table()


MANIFEST_SCHEMA = pa.schema([("shard", pa.int64()), ("files", pa.string()), ("documents", pa.int64()),
                             ("characters", pa.int64()), ("tokens", pa.int64()), ("languages", pa.string()),
                             ("tokstats", pa.string())])


@register
class Shard(DatasetOperator):
    """Token-balanced Dolma shards with a manifest, tokenized output and tokenizer metrics."""

    name = "shard"
    Params = ShardParams
    outputs: dict[str, pa.DataType] = {}
    writes_documents = True
    attribute_params = ("spans_attribute",)

    def apply(self, ds, ctx: RunContext):
        p: ShardParams = self.params  # type: ignore[assignment]
        tok = load_tokenizer(p.tokenizer)  # fail early, on the driver, if the tokenizer cannot load
        ds, timer = self.materialize(ds, ctx)

        scratch = os.path.join(ctx.out_dir, "_work", self.step_name)
        ids_dir = os.path.join(scratch, "ids")
        pieces = ds.map_batches(_Pieces(p, ctx.file_index, ids_dir), batch_format="pyarrow",
                                batch_size=None).materialize()
        timer.done("tokenize_split", pieces.count())
        # global order by id hash: equal-width hash ranges, hash-shuffled so each range is in one block, sorted
        # locally; per-range token sums (a few numbers) give every range its offset
        ranges = 4 * p.partitions
        ordered = (pieces.map_batches(_with_range(ranges), batch_format="pyarrow", batch_size=None)
                   .repartition(p.partitions, keys=["range"])
                   .map_batches(_sort_block, batch_format="pyarrow", batch_size=None).materialize())
        sums: dict[int, int] = {}
        for row in ordered.map_batches(_range_sums, batch_format="pyarrow", batch_size=None).take_all():
            sums[row["range"]] = sums.get(row["range"], 0) + row["tokens"]
        offsets, acc = {}, 0
        for rng in sorted(sums):
            offsets[rng] = acc
            acc += sums[rng]
        assigned = ordered.map_batches(_Assign(offsets, p.tokens_per_shard), batch_format="pyarrow", batch_size=None)
        assign_dir = os.path.join(scratch, "assign")
        dedup.write_decisions(assigned, assign_dir)
        timer.done("assign", acc)

        exploded = ds.map_batches(_Explode(assign_dir, ids_dir, ctx.file_index), batch_format="pyarrow",
                                  batch_size=None)
        manifest_rows = (exploded.repartition(p.partitions, keys=["shard"])
                         .map_batches(_ShardWriter(p, ctx), batch_format="pyarrow", batch_size=None).take_all())
        timer.done("write_shards", acc)
        info = self._manifest(sorted(manifest_rows, key=lambda r: r["shard"]), tok, ctx)
        timer.info(info)
        return ds

    def _manifest(self, rows: list[dict[str, Any]], tok: Any, ctx: RunContext) -> dict[str, Any]:
        p: ShardParams = self.params  # type: ignore[assignment]
        stats = TokStats()
        shards = []
        for r in rows:
            stats.merge(json.loads(r["tokstats"]))
            shards.append({"shard": r["shard"], "files": json.loads(r["files"]), "documents": r["documents"],
                           "characters": r["characters"], "tokens": r["tokens"],
                           "languages": json.loads(r["languages"])})
        totals = {k: sum(s[k] for s in shards) for k in ("documents", "characters", "tokens")}
        manifest = {"tokenizer": tok.info.as_dict(), "tokens_per_shard": p.tokens_per_shard,
                    "max_doc_tokens": p.max_doc_tokens, "bos": p.bos, "eos": p.eos,
                    "token_dtype": "uint16" if tok.vocab_size <= 65536 else "uint32",
                    "shards": shards, "totals": {**totals, "shards": len(shards)},
                    "tokenizer_metrics": stats.report()}
        atomic_write(f"{ctx.out_dir}/manifest.json", (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
        return {"tokenizer": tok.info.as_dict(), "shards": len(shards), **totals,
                "tokenizer_metrics": manifest["tokenizer_metrics"]}
