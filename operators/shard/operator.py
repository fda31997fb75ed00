"""shard: token-balanced Dolma shards, optional tokenized output (`dolma tokens` layout), a manifest, and
per-language tokenizer metrics. The last step of a pipeline: it writes the documents itself.

How (no shuffle of documents through Ray; each block's pieces are written once to a sorted run and every shard
reads its slice of every run):

1. **tokenize** (one task per block): every live document is tokenized once. With ``max_doc_tokens``, a longer
   document is cut into pieces ``<id>-part-<k>`` at sentence boundaries (the span attribute named by
   ``spans_attribute``, e.g. the segmenter's), else at line breaks, else at spaces, else (a single "word" longer
   than the budget) at characters; each piece is re-tokenized, so counts are exact, and the pieces re-join to
   the original text. The block's pieces are then made ready to write (document and attribute JSON lines, token
   ids with BOS/EOS in the output dtype), sorted by (id hash, id), and written as one Arrow file: a *run* under
   ``OUT/_work/<step>/runs/``. The task returns only a summary: token sums over 1,024 equal-width hash bins and
   the tokenizer metrics of its documents.
2. **assign**: the global order is by (id hash, id), so shard ``n`` is the pieces whose tokens-before fall in
   ``[n, n+1) * tokens_per_shard``. The summed histogram gives each hash range its token offset; one task per
   range (sized to ~2M pieces) merges the range's slices of all runs and returns the key of each shard's first
   piece. So shards hold at most ``tokens_per_shard`` + one piece, at least ``tokens_per_shard`` - one piece (but
   the last), numbered densely; the assignment depends only on the ids: reruns and repartitionings give
   identical shards.
3. **write** (``writers`` tasks, each a run of consecutive shards): read the shard's slice of every run (memory
   mapped, sorted, so a binary search finds it), merge, and write ``documents/<source>/shard-<n>.jsonl.zst``,
   ``attributes/<set>/<source>/shard-<n>.jsonl.zst`` (same rows, same order; span attributes clipped and
   shifted into each piece) and with ``write_tokens`` ``tokens/part-<n>-00000.npy`` + ``.csv.gz`` — by
   concatenating bytes prepared in step 1 and compressing them.

``manifest.json`` at the output root lists per shard the files, documents, characters, tokens, the language
histogram and the tokenizer identity, with totals; the step's stats carry tokenizer metrics per language.
The runs need a filesystem every worker can read (a local disk on one machine, a shared mount on a cluster; an
fsspec URL works but reads whole runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate import schema, storage
from curate.operator import DatasetOperator, Params, RunContext, arrow_blocks
from operators.shard.tokenizers import Tokenizer, load as load_tokenizer
from operators.shard import formats as fmt
from operators.shard.export import tokenizer_json
from operators.shard.tokens import TokStats, encode_part, part_files, token_dtype
from curate.writer import DolmaWriter, atomic_write, compress

BIN_BITS = 10  # 1,024 equal-width bins of the 64-bit id hash: per-block histograms stay 16 KB
RANGE_PIECES = 2_000_000  # pieces one assign task sorts at most (a single hotter bin may exceed it)


class ShardParams(Params):
    tokenizer: str = Field("tiktoken:cl100k_base", description="tiktoken:<encoding> or hf:<tokenizer.json path>.")
    tokens_per_shard: int = Field(50_000_000, gt=0, description="Target tokens per shard.")
    max_doc_tokens: int | None = Field(None, gt=2, description="Split longer documents into parts of at most this "
                                       "many tokens, BOS/EOS included (what a trainer's sequence holds).")
    spans_attribute: str | None = Field(None, description="Span attribute with sentence boundaries to split at "
                                        "(e.g. segment__sentences__spans); default: line breaks, then spaces.")
    write_tokens: bool = Field(True, description="Also write tokenized output (in `formats`).")
    formats: list[Literal["dolma", "megatron", "mds", "litdata", "hf_parquet"]] = Field(
        ["dolma"], min_length=1, description="Token file formats, the same ids and documents in each: dolma "
        "(tokens/, `dolma tokens` layout, OLMo-core), megatron (.bin/.idx, Megatron-LM/NeMo), mds (MosaicML "
        "streaming, LLM Foundry), litdata (LitGPT), hf_parquet (Hugging Face datasets). `curate export` writes "
        "more from a finished run.")
    bos: bool = Field(False, description="Prepend the tokenizer's BOS token to each document (tokenized output).")
    eos: bool = Field(True, description="Append the tokenizer's EOS token to each document (tokenized output).")
    bos_token_id: int | None = Field(None, ge=0, description="BOS id; default: the tokenizer's/model's own config.")
    eos_token_id: int | None = Field(None, ge=0, description="EOS id; default: the tokenizer's/model's own config "
                                     "(tiktoken: <|endoftext|>).")
    pad_token_id: int | None = Field(None, ge=0, description="PAD id recorded in the manifest (trainers pad with it); "
                                     "default: the model's own config, if any.")
    writers: int = Field(8, ge=1, description="Writer tasks; each writes a run of consecutive shards.")
    metrics_docs: int = Field(2000, ge=0, description="About this many documents, chosen by id hash, are "
                              "split into words for fertility and the whole-word share (all, in a smaller corpus).")

    @model_validator(mode="after")
    def _formats(self) -> "ShardParams":
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats: each format once: {self.formats}")
        if not self.write_tokens and self.formats != ["dolma"]:
            raise ValueError("formats: no token files are written with write_tokens: false")
        return self


def id_hash(piece_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(piece_id.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def split_points(text: str, spans: list | None) -> list[int]:
    """Primary cut positions: ends of sentence spans, else after each line break."""
    if spans:
        cuts = sorted({int(s[1]) for s in spans if 0 < int(s[1]) < len(text)})
    else:
        cuts = [m.end() for m in re.finditer(r"\n+", text) if m.end() < len(text)]
    return cuts


def split_document(text: str, tok: Tokenizer, max_tokens: int, spans: list | None
                   ) -> list[tuple[int, int, np.ndarray]]:
    """Contiguous (start, end, ids) pieces covering the text, each with at most max_tokens tokens."""
    def count(a: int, b: int) -> int:
        return len(tok.encode_arrays([text[a:b]])[0])

    def segments(lo: int, hi: int, cuts: list[int]) -> list[tuple[int, int]]:
        inner = [c for c in cuts if lo < c < hi]
        bounds = [lo, *inner, hi]
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]

    def fit(seg: tuple[int, int], level: int) -> list[tuple[int, int, int]]:
        """(start, end, tokens) parts of a segment that each fit: spaces, then characters."""
        a, b = seg
        n = count(a, b)
        if n <= max_tokens:
            return [(a, b, n)]
        if level == 0:
            cuts = [m.end() for m in re.finditer(r"\s+", text[a:b])]
            subs = segments(a, b, [a + c for c in cuts])
            if len(subs) > 1:
                return [p for s in subs for p in fit(s, 1)]
        mid = a + (b - a) // 2  # a "word" longer than the budget: cut at characters
        return fit((a, mid), 2) + fit((mid, b), 2)

    segs = [p for s in segments(0, len(text), split_points(text, spans)) for p in fit(s, 0)]
    pieces: list[tuple[int, int, np.ndarray]] = []
    i = 0
    while i < len(segs):
        j, total = i, 0
        while j < len(segs) and total + segs[j][2] <= max_tokens:
            total += segs[j][2]
            j += 1
        j = max(j, i + 1)
        while True:  # exact count of the joined piece (BPE merges across segment borders can change it)
            ids = tok.encode_arrays([text[segs[i][0]:segs[j - 1][1]]])[0]
            if len(ids) <= max_tokens or j == i + 1:
                break
            j -= 1
        pieces.append((segs[i][0], segs[j - 1][1], ids))
        i = j
    return pieces


def _bins(h: np.ndarray) -> np.ndarray:
    """Equal-width bins of the signed 64-bit hash, in hash order."""
    return ((h.view(np.uint64) ^ np.uint64(1 << 63)) >> np.uint64(64 - BIN_BITS)).astype(np.int64)


def _bin_start(b: int) -> int | None:
    """Smallest hash of bin b (None past the last bin)."""
    return None if b >= (1 << BIN_BITS) else (b << (64 - BIN_BITS)) - (1 << 63)


SUMMARY_SCHEMA = pa.schema([("run", pa.string()), ("pieces", pa.int64()), ("hist_tokens", pa.binary()),
                            ("hist_pieces", pa.binary()), ("tokstats", pa.string())])


class _Tokenize:
    """Step 1 for one block: tokenize, split, prepare every output byte, write one sorted run."""

    def __init__(self, p: ShardParams, ctx: RunContext, runs_dir: str, sample_rate: float):
        self.p, self.file_index, self.runs_dir, self.sample_rate = p, ctx.file_index, runs_dir, sample_rate
        self.writer = DolmaWriter(ctx.out_dir, ctx.source, ctx.compression, ctx.added, {})

    def __call__(self, table: pa.Table) -> pa.Table:
        p = self.p
        tok = _tokenizer(p)
        live = table.filter(pa.array(schema.live_mask(table)))
        if live.num_rows == 0:
            return SUMMARY_SCHEMA.empty_table()
        nodes = schema.node_ids(live, self.file_index)
        texts = live.column("text").to_pylist()
        piece_tokens = tok.encode_arrays(texts)
        split = {}
        if p.max_doc_tokens:
            budget = p.max_doc_tokens - _n_specials(p)  # the bound is on the document as written, specials in
            spans = live.column(p.spans_attribute).to_pylist() if p.spans_attribute else None
            split = {r: split_document(texts[r], tok, budget, spans[r] if spans else None)
                     for r, ids in enumerate(piece_tokens) if len(ids) > budget}
        pieces, piece_tokens, langs = self._split_pieces(live, texts, piece_tokens, split)
        piece_ids = pieces.column("id").to_pylist()
        piece_texts = pieces.column("text").to_pylist() if split else texts
        h = np.fromiter((id_hash(x) for x in piece_ids), dtype=np.int64, count=len(piece_ids))
        lengths = np.fromiter((len(x) for x in piece_tokens), dtype=np.int64, count=len(piece_tokens))
        stats = TokStats(tok.vocab_size)
        stats.add(langs, piece_texts, piece_tokens, tok, (h % 1_000_000) < int(round(self.sample_rate * 1e6)))

        # lines are made in block order and reordered as lists: cheaper than a take over the whole table
        order = np.argsort(h, kind="stable")
        if (np.diff(h[order]) == 0).any():  # 64-bit hash collision: order those by id
            order = np.lexsort((np.array(piece_ids, dtype=str), h))
        reorder = lambda xs: [xs[i] for i in order]  # noqa: E731
        out = {"h": pa.array(h[order]), "id": pa.array(reorder(piece_ids), pa.string()),
               "tokens": pa.array(lengths[order]),
               "chars": pa.array(pc.utf8_length(pieces.column("text")).to_numpy().astype(np.int64)[order]),
               "lang": pa.array(reorder([x or "und" for x in langs]), pa.string()),
               "doc": pa.array(reorder(self.writer.document_lines(pieces)), pa.binary()),
               "source": pa.array(reorder(pieces.column("source").to_pylist()), pa.string()),
               "file": pa.array(reorder(pieces.column(schema.FILE).to_pylist()), pa.string())}
        attr_cols = [c for c in pieces.column_names if schema.is_attribute(c)]
        for aset, lines in self.writer.attribute_lines(pieces, attr_cols).items():
            out[f"attr:{aset}"] = pa.array(reorder(lines), pa.binary())
        if p.write_tokens:
            out["ids"] = _with_specials(reorder(piece_tokens), lengths[order], tok, p)
        run = f"{self.runs_dir}/{int(nodes.min()):016x}.arrow"
        _write_run(run, pa.table(out))

        bins = _bins(h)  # histograms do not care about order
        nb = 1 << BIN_BITS
        return pa.table({"run": [run], "pieces": [len(h)],
                         "hist_tokens": [np.bincount(bins, weights=lengths, minlength=nb).astype(np.int64).tobytes()],
                         "hist_pieces": [np.bincount(bins, minlength=nb).astype(np.int64).tobytes()],
                         "tokstats": [json.dumps(stats.raw())]}, schema=SUMMARY_SCHEMA)

    @staticmethod
    def _split_pieces(live: pa.Table, texts: list[str], doc_tokens: list[np.ndarray],
                      split: dict[int, list[tuple[int, int, np.ndarray]]]
                      ) -> tuple[pa.Table, list[np.ndarray], list[str | None]]:
        """The live rows as pieces: split documents become ``<id>-part-<k>`` rows with their text slice and span
        attributes clipped and shifted into the piece. Every piece's metadata gets ``parent_id``, ``part`` and
        ``parts`` (a whole document: its own id, 0, 1), so all documents carry the same keys. Also returns each
        piece's language (``metadata.language``), read from the same parse of each document's metadata."""
        rows, bounds, tokens = [], [], []
        for r, ids in enumerate(doc_tokens):
            for k, (a, b, pids) in enumerate(split.get(r, [(0, len(texts[r]), ids)])):
                rows.append(r)
                bounds.append((k, a, b))
                tokens.append(pids)
        base = live.take(pa.array(rows, pa.int64()))
        parent = live.column("id").to_pylist()
        doc_meta = [orjson.loads(m) if m else {} for m in live.column("metadata").to_pylist()]  # once per document
        ids, new_texts, metas = [], [], []
        for r, (k, a, b) in zip(rows, bounds):
            whole = r not in split
            ids.append(parent[r] if whole else f"{parent[r]}-part-{k}")
            new_texts.append(texts[r] if whole else texts[r][a:b])
            metas.append(orjson.dumps({**doc_meta[r], "parent_id": parent[r], "part": k,
                                       "parts": len(split.get(r, [0]))}, option=orjson.OPT_SORT_KEYS).decode())
        for c, v in (("id", ids), ("text", new_texts), ("metadata", metas)):
            base = base.set_column(base.column_names.index(c), c, pa.array(v, pa.string()))
        for c in base.column_names:
            col = base.column(c)
            if schema.is_attribute(c) and pa.types.is_list(col.type):  # spans inside the piece, shifted to it
                values = col.to_pylist()
                for i, (r, (_, a, b)) in enumerate(zip(rows, bounds)):
                    if r in split and values[i] is not None:
                        values[i] = [[max(s[0], a) - a, min(s[1], b) - a, *s[2:]] for s in values[i]
                                     if s[1] > a and s[0] < b]
                base = base.set_column(base.column_names.index(c), c, pa.array(values, col.type))
        return base, tokens, [doc_meta[r].get("language") for r in rows]


def _tokenizer(p: ShardParams) -> Tokenizer:
    return load_tokenizer(p.tokenizer, p.bos_token_id, p.eos_token_id, p.pad_token_id)


def _n_specials(p: ShardParams) -> int:
    """Special tokens added to each document in the token files."""
    return int(p.bos) + int(p.eos) if p.write_tokens else 0


def _call(fn: Any, table: pa.Table) -> Any:
    return fn(table)


def _with_specials(ids: list[np.ndarray], lengths: np.ndarray, tok: Tokenizer, p: ShardParams) -> pa.Array:
    """Per piece, its token ids as written to the token file: BOS/EOS added, in the file's dtype."""
    dtype = token_dtype(tok.vocab_size)
    bos = tok.bos_id if p.bos else None
    eos = tok.eos_id if p.eos else None
    if (p.bos and bos is None) or (p.eos and eos is None):
        raise ValueError(f"{tok.spec}: the tokenizer has no {'BOS' if p.bos and bos is None else 'EOS'} token")
    extra = (bos is not None) + (eos is not None)
    new_len = lengths + extra
    offsets = np.r_[0, np.cumsum(new_len)]
    flat = np.empty(int(offsets[-1]), dtype=dtype)
    body = offsets[:-1] + (bos is not None)
    if bos is not None:
        flat[offsets[:-1]] = bos
    if eos is not None:
        flat[offsets[1:] - 1] = eos
    if len(ids):
        # every body token lands at its piece's body start + its index within the piece
        flat[np.repeat(body - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(int(lengths.sum()))] = \
            np.concatenate(ids)
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(flat))


def _write_run(url: str, table: pa.Table) -> None:
    fs, path = storage.url_to_fs(url)
    fs.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex}"
    local = storage.is_local(fs)
    with (pa.OSFile(tmp, "wb") if local else fs.open(tmp, "wb")) as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    fs.mv(tmp, path)  # a retried task replaces its run whole


def _read_run(url: str, columns: list[str] | None = None) -> pa.Table:
    """A run, memory-mapped where it is a local file: the assign step then touches only the three small columns
    it reads, and writers share the page cache."""
    fs, path = storage.url_to_fs(url)
    if storage.is_local(fs):
        t = pa.ipc.open_file(pa.memory_map(path)).read_all()
    else:
        with fs.open(path, "rb") as f:
            t = pa.ipc.open_file(pa.py_buffer(f.read())).read_all()
    return t.select(columns) if columns else t


Key = tuple[int, str]


def _lower_bound(h: np.ndarray, ids: pa.ChunkedArray, key: Key | None) -> int:
    """First row of a run (sorted by (h, id)) whose key is >= key; None is past the end."""
    if key is None:
        return len(h)
    i, j = np.searchsorted(h, key[0], "left"), np.searchsorted(h, key[0], "right")
    while i < j and ids[int(i)].as_py() < key[1]:  # equal hashes: 64-bit collisions, ordered by id
        i += 1
    return int(i)


def _slice(t: pa.Table, lo: Key | None, hi: Key | None) -> pa.Table:
    h = t.column("h").to_numpy()
    a = _lower_bound(h, t.column("id"), lo) if lo is not None else 0
    return t.slice(a, _lower_bound(h, t.column("id"), hi) - a)


def _merge_order(tables: list[pa.Table]) -> np.ndarray:
    """Row order, over the tables concatenated, that merges slices of sorted runs into (h, id) order."""
    h = np.concatenate([t.column("h").to_numpy() for t in tables]) if tables else np.empty(0, np.int64)
    order = np.argsort(h, kind="stable")
    if (np.diff(h[order]) == 0).any():  # 64-bit hash collision: order those by id
        ids = [x for t in tables for x in t.column("id").to_pylist()]
        order = np.lexsort((np.array(ids, dtype=str), h))
    return order


def _merge(tables: list[pa.Table]) -> pa.Table:
    """Slices of sorted runs -> one table in (h, id) order (small columns only: the assign step)."""
    tables = [x for x in tables if x.num_rows]
    return pa.concat_tables(tables).take(_merge_order(tables)) if tables else pa.table({"h": pa.array([], pa.int64())})


def _first_keys(runs: list[str], lo: Key | None, hi: Key | None, offset: int, per_shard: int
                ) -> list[tuple[int, int, str]]:
    """Assign task: (shard, h, id) of the first piece of every shard that starts within [lo, hi)."""
    t = _merge([_slice(_read_run(r, ["h", "id", "tokens"]), lo, hi) for r in runs])
    if t.num_rows == 0:
        return []
    tokens = t.column("tokens").to_numpy()
    shard = (offset + np.cumsum(tokens) - tokens) // per_shard
    first = np.flatnonzero(np.r_[True, shard[1:] != shard[:-1]])
    h, ids = t.column("h").to_numpy(), t.column("id")
    return [(int(shard[i]), int(h[i]), ids[int(i)].as_py()) for i in first]


def _write_shards(runs: list[str], shards: list[tuple[int, Key, Key | None]], p: ShardParams, out_dir: str,
                  source: str, codec: str, vocab_size: int) -> list[dict[str, Any]]:
    """Write task: consecutive shards (number, first key, next shard's first key), each a merge of its slices.

    The merged order is applied column by column to what the files need (lines joined in order, token ids
    gathered with numpy), never as a take over the whole table: that copies every column twice."""
    ext = ".jsonl.zst" if codec == "zstd" else ".jsonl.gz"
    lo, hi = shards[0][1], shards[-1][2]
    tables = [_slice(_read_run(r), lo, hi) for r in runs]
    rows = []
    pool = ThreadPoolExecutor(1)
    for n, first, nxt in shards:
        slices = [x for x in (_slice(t, first, nxt) for t in tables) if x.num_rows]
        order = _merge_order(slices)
        name = f"shard-{n:05d}"
        docs_rel = f"documents/{source}/{name}{ext}"
        tokens = None
        if p.write_tokens:  # token files in a second thread: numpy, zlib and file writes release the GIL
            tokens = pool.submit(_write_token_part, slices, order, p, vocab_size, out_dir, n, docs_rel)
        files = []
        for c in [c for c in slices[0].column_names if c == "doc" or c.startswith("attr:")]:
            lines = [x for t in slices for x in t.column(c).to_pylist()]
            rel = docs_rel if c == "doc" else f"attributes/{c[5:]}/{source}/{name}{ext}"
            atomic_write(f"{out_dir}/{rel}", compress(b"".join([lines[i] for i in order]), codec, threads=2))
            files.append(rel)
        token_files, index = tokens.result() if tokens else ([], {})
        files += token_files
        langs = Counter(x for t in slices for x in t.column("lang").to_pylist())
        text_tokens = sum(int(pc.sum(t.column("tokens")).as_py()) for t in slices)
        rows.append({"shard": n, "files": files, "documents": len(order),
                     "characters": sum(int(pc.sum(t.column("chars")).as_py()) for t in slices),
                     "tokens": text_tokens + _n_specials(p) * len(order), "text_tokens": text_tokens,
                     "languages": dict(sorted(langs.items())), "index": index})
    pool.shutdown()
    return rows


def _write_token_part(slices: list[pa.Table], order: np.ndarray, p: ShardParams, vocab_size: int, out_dir: str,
                      n: int, src: str) -> tuple[list[str], dict[str, Any]]:
    """One shard's token files in every requested format (dolma: ``tokens/part-<n>-00000.npy`` and its
    ``start,end,id,src,loc`` csv.gz index) and its provenance sidecar; returns the files and the shard's entries
    for the indexed formats' index files."""
    values, starts, lengths = [], [], []
    for t in slices:
        col = t.column("ids").combine_chunks()  # a slice: its offsets point into the run's whole child array
        off = col.offsets.to_numpy()
        starts.append(off[:-1] - off[0] + sum(len(v) for v in values))
        lengths.append(np.diff(off))
        values.append(col.values.to_numpy()[off[0]:off[-1]])
    flat = np.concatenate(values)
    starts_o, lengths_o = np.concatenate(starts)[order], np.concatenate(lengths)[order]
    pieces = [flat[a:a + k] for a, k in zip(starts_o.tolist(), lengths_o.tolist())]
    column = lambda c: [x for t in slices for x in t.column(c).to_pylist()]  # noqa: E731
    ids, sources, files = ([xs[i] for i in order] for xs in (column("id"), column("source"), column("file")))
    st = fmt.ShardTokens(n=n, ids=ids, sources=sources, files=files, tokens=np.concatenate(pieces),
                         offsets=np.r_[0, np.cumsum(lengths_o)].astype(np.int64), vocab_size=vocab_size)
    written = []
    if "dolma" in p.formats:
        for rel, data in zip(part_files(n), encode_part(st.tokens, st.offsets, ids, src)):
            atomic_write(f"{out_dir}/{rel}", data)
            written.append(rel)
    out, index_entries = fmt.write_shard(st, [f for f in p.formats if f != "dolma"])
    for rel, data in out.items():
        atomic_write(f"{out_dir}/{rel}", data)
        written.append(rel)
    return written, index_entries


class Shard(DatasetOperator):
    """Token-balanced Dolma shards with a manifest, tokenized output and tokenizer metrics."""

    name = "shard"
    Params = ShardParams
    outputs: dict[str, pa.DataType] = {}
    writes_documents = True
    attribute_params = ("spans_attribute",)

    @classmethod
    def check(cls, params: Params, available: dict[str, pa.DataType]) -> None:
        """Also load the tokenizer (cached per process): a missing file or a BOS/EOS the tokenizer does not define
        is a config error, reported before any work starts."""
        super().check(params, available)
        p: ShardParams = params  # type: ignore[assignment]
        tok = _tokenizer(p)
        for k in ("bos", "eos"):
            if getattr(p, k) and p.write_tokens and tok.special[k].id is None:
                raise ValueError(f"{p.tokenizer} defines no {k.upper()} token in its config; set {k}_token_id "
                                 f"or {k}: false")

    def preflight(self) -> None:
        """The tokenizer loads where the shard tasks run (a hub name needs the hub or a cache there)."""
        _tokenizer(self.params)  # type: ignore[arg-type]

    def apply(self, ds, ctx: RunContext):
        import ray

        p: ShardParams = self.params  # type: ignore[assignment]
        tok = _tokenizer(p)
        ds, timer = self.materialize(ds, ctx)
        runs_dir = self.stage_dir(ctx, "runs")
        rate = min(1.0, p.metrics_docs / max(ds.count(), 1))

        def tokenize() -> dict[str, Any]:
            # one Ray task per materialised block: plain tasks keep both cores busy where a Ray Data map over the
            # same blocks ran at ~1.3x concurrency on two CPUs (its resource reservation holds tasks back)
            fn = ray.put(_Tokenize(p, ctx, runs_dir, rate))
            task = ray.remote(num_cpus=1)(_call)
            summaries = [r for t in ray.get([task.remote(fn, ref) for ref in arrow_blocks(ds)])
                         for r in t.to_pylist()]
            summaries.sort(key=lambda r: r["run"])
            hist_tokens = np.zeros(1 << BIN_BITS, dtype=np.int64)
            hist_pieces = np.zeros(1 << BIN_BITS, dtype=np.int64)
            merged = TokStats(tok.vocab_size)
            for r in summaries:
                merged.merge(json.loads(r["tokstats"]))
                hist_tokens += np.frombuffer(r["hist_tokens"], dtype=np.int64)
                hist_pieces += np.frombuffer(r["hist_pieces"], dtype=np.int64)
            return {"runs": [r["run"] for r in summaries], "tokstats": merged.raw(),
                    "hist_tokens": hist_tokens.tolist(), "hist_pieces": hist_pieces.tolist()}

        made = self.stage(ctx, "runs", tokenize)  # checkpointed: a resume does not tokenize again
        runs = made["runs"]
        stats = TokStats(tok.vocab_size)
        stats.merge(made["tokstats"])
        hist_tokens = np.asarray(made["hist_tokens"], dtype=np.int64)
        hist_pieces = np.asarray(made["hist_pieces"], dtype=np.int64)
        timer.done("tokenize_split", int(hist_pieces.sum()))

        first_keys = [tuple(k) for k in self.stage(ctx, "assign", lambda: self._assign(
            ray, runs, hist_tokens, hist_pieces, p.tokens_per_shard))]
        timer.done("assign", int(hist_tokens.sum()))

        # shards numbered densely in key order (a piece longer than a shard would otherwise leave a gap)
        bounds = [(n, (h, i)) for n, (_, h, i) in enumerate(first_keys)]
        plan = [(n, key, bounds[n + 1][1] if n + 1 < len(bounds) else None) for n, key in bounds]
        groups = [g for g in np.array_split(np.arange(len(plan)), min(p.writers, len(plan)) or 1) if len(g)]
        write = ray.remote(num_cpus=1)(_write_shards)
        manifest_rows, pending = [], {}
        for g in groups:  # each group of shards is a checkpointed stage: a resume writes only the missing ones
            stage = f"write-{int(g[0]):05d}"
            done = self.stage_done(ctx, stage)
            if done is not None:
                manifest_rows += done
                continue
            pending[write.remote(runs, [plan[i] for i in g], p, ctx.out_dir, ctx.source, ctx.compression,
                                 tok.vocab_size)] = stage
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                rows = ray.get(ref)
                self.stage_mark(ctx, pending.pop(ref), rows)
                manifest_rows += rows
        timer.done("write_shards", int(hist_tokens.sum()))
        manifest_rows.sort(key=lambda r: r["shard"])
        index = [r.pop("index", {}) for r in manifest_rows]
        if p.write_tokens:
            atomic_write(f"{ctx.out_dir}/tokens/tokenizer.json", tokenizer_json(tok))
            for rel, data in fmt.index_files(p.formats, index, tok.vocab_size).items():
                atomic_write(f"{ctx.out_dir}/{rel}", data)
        info = self._manifest(manifest_rows, stats, tok, ctx)
        timer.info(info)
        return ds

    @staticmethod
    def _assign(ray: Any, runs: list[str], hist_tokens: np.ndarray, hist_pieces: np.ndarray, per_shard: int
                ) -> list[tuple[int, int, str]]:
        """First key of every shard, one task per hash range of about RANGE_PIECES pieces."""
        ranges, lo, acc = [], 0, 0
        for b in range(1 << BIN_BITS):
            acc += int(hist_pieces[b])
            if acc >= RANGE_PIECES or b == (1 << BIN_BITS) - 1:
                ranges.append((lo, b + 1))
                lo, acc = b + 1, 0
        offsets = np.r_[0, np.cumsum(hist_tokens)]
        task = ray.remote(num_cpus=1)(_first_keys)
        keys = lambda b: None if _bin_start(b) is None else (_bin_start(b), "")  # noqa: E731
        found = ray.get([task.remote(runs, keys(a) if a else None, keys(b), int(offsets[a]), per_shard)
                         for a, b in ranges if hist_pieces[a:b].sum()])
        first: dict[int, tuple[int, int, str]] = {}
        for part in found:  # ranges are in key order: the first report of a shard is its first piece
            for shard, h, i in part:
                first.setdefault(shard, (shard, h, i))
        return [first[s] for s in sorted(first)]

    def _manifest(self, shards: list[dict[str, Any]], stats: TokStats, tok: Tokenizer, ctx: RunContext
                  ) -> dict[str, Any]:
        p: ShardParams = self.params  # type: ignore[assignment]
        shards = sorted(shards, key=lambda r: r["shard"])
        totals = {k: sum(s[k] for s in shards) for k in ("documents", "characters", "tokens", "text_tokens")}
        specials = {}
        for k in ("bos", "eos", "pad"):
            specials[f"{k}_token_id"], specials[f"{k}_token"] = tok.special[k].id, tok.special[k].token
        manifest = {"tokenizer": {**tok.info.as_dict(),
                                  "tokenizer_json": "tokens/tokenizer.json" if p.write_tokens else None},
                    "tokens_per_shard": p.tokens_per_shard, "max_doc_tokens": p.max_doc_tokens,
                    "bos": p.bos, "eos": p.eos, **specials,
                    "tokens_counted": "tokens: every id in the token files (BOS/EOS included); text_tokens: the "
                                      "documents' own tokens (what tokens_per_shard balances)",
                    "token_dtype": np.dtype(token_dtype(tok.vocab_size)).name,
                    "formats": fmt.manifest_entry(p.formats if p.write_tokens else [], shards, tok.vocab_size,
                                                  totals),
                    "shards": shards, "totals": {**totals, "shards": len(shards)},
                    "tokenizer_metrics": stats.report()}
        text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
        atomic_write(f"{ctx.out_dir}/manifest.json", text.encode())
        return {"tokenizer": tok.info.as_dict(), "shards": len(shards), **totals,
                "tokenizer_metrics": manifest["tokenizer_metrics"]}
