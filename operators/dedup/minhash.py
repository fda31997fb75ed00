"""minhash_dedup: near-duplicate clusters with MinHash LSH, every stage distributed on Ray (CPU only).

Stages (each timed into stats as ``minhash_dedup:<stage>``):

1. **shingle + sign** (per block, parallel): text normalised (NFKC, casefold, Unicode punctuation removed,
   whitespace collapsed); shingles are word ``ngram``-grams, or character ``char_ngram``-grams for text mostly in
   scripts written without spaces (Chinese, Japanese, Thai, ...). After case folding, a block is one array of
   code points: normalisation is a class lookup per code point, tokens a 64-bit polynomial hash of their code
   points, shingles a rolling combination of token hashes folded to 32 bits, all vectorised over the block (no
   regex pass, no Python loop per document or shingle). The permutations are datasketch's ``affine32`` scheme
   (MurmurHash3 fmix32 then ``a*h + b mod 2^32``, ``a`` and ``b`` drawn as datasketch draws them), applied one
   permutation at a time over every hash of the block, so a signature equals
   ``datasketch.MinHash(..., hashfunc=<our token hash>)``'s (tested). Per document only the signature survives:
   ``num_perm * 4`` bytes plus an 8-byte node id.
2. **band**: ``bands`` x ``rows`` of the signature; each band is hashed to 64 bits; rows (band key, node) are
   hash-shuffled so each bucket lands in one block, and every bucket member is linked to the bucket's smallest
   node (star edges: n-1 edges for a bucket of n, not n^2).
3. **verify** (optional, ``verify_threshold``): candidate edges whose signature-estimated Jaccard is below the
   threshold are dropped (LSH false positives). Estimated from all ``num_perm`` values: std ~ 0.045 at 112.
4. **components**: distributed connected components (operators.dedup.components, Large-Star/Small-Star).
5. **representatives**: per cluster the document with the highest ``keep_highest`` attribute, else the
   smallest id; ties broken by id.

Signatures of at most ``ONE_TASK_BYTES`` (a sample, ~200k documents) go through stages 2-5 in one task
(``decide_one_task``): the same functions over all rows at once, so the same decisions (tested).

Results are attributes ``minhash_dedup__minhash__duplicate`` (1.0 on duplicates, 0.0 on representatives) and
``minhash_dedup__minhash__cluster_size``, and the cluster id (the representative's id) in the per-document stats;
the ``filter`` step drops with ``drop: "minhash_dedup__minhash__duplicate > 0"``. ``save_index`` writes the band
keys of this run's representatives (parquet) and ``against`` dedups a new crawl against such indexes without
recomputing the old corpus: old documents always win.

Bands/rows: FineWeb's 14 x 8 = 112 by default; or give ``threshold`` and the (bands, rows) pair minimising the
weighted false-positive + false-negative area under the S-curve is chosen, as datasketch does.
"""

from __future__ import annotations

import errno
import json
import os
from functools import lru_cache
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from operators.dedup import common as dedup
from curate import schema, storage
from curate.operator import Params, RunContext, arrow_blocks, fits_one_task

U64 = np.uint64
_P = U64(0x100000001B3)  # odd multiplier of the code-point polynomial (FNV prime)
_Q = U64(0x9E3779B97F4A7C15)  # odd multiplier combining token hashes into shingles
_NO_SPACE_SCRIPTS = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x0E00, 0x0E7F),
                     (0x0E80, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0xAC00, 0xD7AF))


# --------------------------------------------------------------------------------------------- stage 1
def uses_char_shingles(text: str) -> bool:
    """True when most letters are in scripts written without spaces between words."""
    sample = text[:2000]
    if not sample:
        return False
    cps = np.frombuffer(sample.encode("utf-32-le"), dtype=np.uint32)
    no_space = np.zeros(len(cps), dtype=bool)
    for lo, hi in _NO_SPACE_SCRIPTS:
        no_space |= (cps >= lo) & (cps <= hi)
    letters = np.count_nonzero(cps > 0x40)
    return letters > 0 and no_space.sum() / letters > 0.3


@lru_cache(maxsize=64)
def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i (mod 2^64) for i < n; P is odd so it is invertible mod 2^64."""
    inv = pow(int(_P), -1, 1 << 64)
    with np.errstate(over="ignore"):
        p = np.cumprod(np.r_[U64(1), np.full(n - 1, _P, dtype=U64)], dtype=U64) if n > 1 else np.ones(1, U64)
        q = np.cumprod(np.r_[U64(1), np.full(n - 1, U64(inv), dtype=U64)], dtype=U64) if n > 1 else np.ones(1, U64)
    return p, q


def _segment_hashes(units: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit polynomial hash of units[s:e] for each segment, position independent, fully vectorised."""
    n = len(units)
    p, q = _powers(_bucket(n + 1))
    with np.errstate(over="ignore"):
        pref = np.empty(n + 1, dtype=U64)
        pref[0] = 0
        np.multiply(units, p[:n], out=pref[1:], dtype=U64)
        np.cumsum(pref[1:], out=pref[1:])
        out = pref[ends]
        out -= pref[starts]
        out *= q[starts]
        return out


def _bucket(n: int) -> int:
    return 1 << max(10, (n - 1).bit_length())  # cache powers by size class


def token_hashes(norm: str, ngram: int, char_ngram: int, char_mode: bool) -> np.ndarray:
    """32-bit hashes of the document's shingles (unique, sorted)."""
    if char_mode:
        units = np.frombuffer(norm.replace(" ", "").encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        k = char_ngram
        if len(units) == 0:
            return np.empty(0, np.uint32)
        tok = units.astype(U64) + U64(1)
    else:
        data = np.frombuffer(norm.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        if len(data) == 0:
            return np.empty(0, np.uint32)
        spaces = np.flatnonzero(data == 0x20)
        starts = np.r_[0, spaces + 1]
        ends = np.r_[spaces, len(data)]
        tok = _segment_hashes(data.astype(U64) + U64(1), starts, ends)
        k = ngram
    if len(tok) < k:  # shorter than one n-gram: the whole text is the only shingle
        k = len(tok)
    m = len(tok) - k + 1
    with np.errstate(over="ignore"):
        h = np.zeros(m, dtype=U64)
        for j in range(k):
            h = h * _Q + tok[j:j + m]
    return np.unique(_finish(h))


# Character classes for the block path, over every code point (built once per process, ~0.05 s): what
# normalize() does to a folded character, as a table lookup instead of regex passes over the text.
_DROP, _WORD, _SPACE, _SEP = 0, 1, 2, 3


@lru_cache(maxsize=1)
def _classes() -> np.ndarray:
    """uint8 class of each code point: _DROP for what normalize() removes (``[^\\w\\s]``), _SPACE for whitespace,
    _SEP for NUL (the document separator of a block), _WORD otherwise."""
    import re

    every = np.arange(0x110000, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    cls = np.full(0x110000, _WORD, dtype=np.uint8)
    for m in re.finditer(r"[^\w\s]+", every):
        cls[m.start():m.end()] = _DROP
    for m in re.finditer(r"\s+", every):
        cls[m.start():m.end()] = _SPACE
    cls[0] = _SEP
    return cls


@lru_cache(maxsize=1)
def _no_space() -> np.ndarray:
    """True for each code point of a script written without spaces (_NO_SPACE_SCRIPTS)."""
    t = np.zeros(0x110000, dtype=bool)
    for lo, hi in _NO_SPACE_SCRIPTS:
        t[lo:hi + 1] = True
    return t


def block_shingles(texts: list[str], ngram: int, char_ngram: int, shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of many raw texts at once: (uint32 hashes, document index), sorted by document.

    Per document the same set as ``token_hashes(normalize(text), ngram, char_ngram, uses_char_shingles(...))``
    (tested), but normalisation after case folding is a table lookup per code point and every later step is a
    vectorised pass over the whole block: no regex pass, no per-document string splitting."""
    from operators.dedup.common import fold

    n_docs = len(texts)
    joined = "\x00".join(fold(t.replace("\x00", "")) for t in texts)
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cls = _classes()[cps]
    keep = cls != _DROP
    if not keep.all():
        cps, cls = cps[keep], cls[keep]
    word = cls == _WORD
    wcp = cps[word]
    # a token starts at a word character after a space or a separator (or at the block's start), so documents
    # never share a token; a document's word characters start at the first token after its separator
    tok_start = (word & ~np.r_[False, word[:-1]])[word]
    index = np.int32 if len(cps) < 1 << 30 else np.int64  # a slice holds one document at least, of any size
    tok = np.cumsum(tok_start, dtype=index) - 1  # global token ordinal of each word character
    seps = np.flatnonzero(cls == _SEP)
    doc_first = np.r_[0, np.cumsum(word, dtype=index)[seps] if len(seps) else seps].astype(np.int64)
    wdoc = np.repeat(np.arange(n_docs, dtype=np.int32), np.diff(np.r_[doc_first, len(wcp)]))
    if shingle == "char":
        char_doc = np.ones(n_docs, dtype=bool)
    elif shingle == "word":
        char_doc = np.zeros(n_docs, dtype=bool)
    else:
        char_doc = _char_mode(wcp, tok, doc_first)
    hashes, docs_of = [], []
    in_char = char_doc[wdoc]
    if in_char.any():
        h, d = _kgrams(wcp[in_char].astype(U64) + U64(1), wdoc[in_char], char_ngram)
        hashes.append(h)
        docs_of.append(d)
    if not in_char.all():
        h, d = _word_kgrams(wcp[~in_char], wdoc[~in_char], tok_start[~in_char], ngram)
        hashes.append(h)
        docs_of.append(d)
    if not hashes:
        return np.empty(0, np.uint32), np.empty(0, np.int64)
    hv, dv = np.concatenate(hashes), np.concatenate(docs_of)
    order = np.argsort(dv, kind="stable")
    return hv[order], dv[order]


def _char_mode(wcp: np.ndarray, tok: np.ndarray, doc_first: np.ndarray) -> np.ndarray:
    """uses_char_shingles(normalize(text)) per document, from its word characters. A word character's place in the
    normalised text is its ordinal among the document's word characters plus the spaces before it (its token's
    ordinal in the document); only places below 2,000 count. ``i + tok[i]`` grows along the block, so each
    document's cut is one searchsorted, and its counts differences of running sums."""
    n = len(wcp)
    if n == 0:
        return np.zeros(len(doc_first), dtype=bool)
    key = tok + np.arange(n, dtype=tok.dtype)
    end = np.r_[doc_first[1:], n]
    cut = np.minimum(np.searchsorted(key, key[np.minimum(doc_first, n - 1)] + 2000), end)
    # sums over [first, cut) of each document: reduceat over the interleaved bounds, every other result (a zero
    # appended so that a bound may be n; reduceat gives x[i] for an empty range, hence the mask)
    bounds = np.stack([doc_first, cut], axis=1).reshape(-1)
    empty = cut <= doc_first
    counts = []
    for flags in (wcp > 0x40, _no_space()[wcp]):
        c = np.add.reduceat(np.r_[flags.view(np.uint8), np.uint8(0)], bounds, dtype=np.int64)[::2]
        c[empty] = 0
        counts.append(c)
    n_letters, n_no_space = counts
    return (n_letters > 0) & (n_no_space / np.maximum(n_letters, 1) > 0.3)  # uses_char_shingles' own test


def _kgrams(tok: np.ndarray, doc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the k-grams of consecutive units (uint64 values) within each document (doc sorted); a document of
    fewer than k units has one shingle, all of them (as token_hashes)."""
    m = len(tok) - k + 1
    hashes, docs_of = [], []
    if m > 0:
        with np.errstate(over="ignore"):
            h = tok[:m].copy()
            for j in range(1, k):
                np.multiply(h, _Q, out=h)
                np.add(h, tok[j:j + m], out=h)
        valid = doc[:m] == doc[k - 1:]
        hashes.append(_finish(h[valid]))
        docs_of.append(doc[:m][valid])
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]]) if len(doc) else np.empty(0, np.int64)
    counts = np.diff(np.r_[starts, len(doc)])
    short = counts < k
    for d, s, c in zip(doc[starts[short]], starts[short], counts[short]):  # shorter than one k-gram
        with np.errstate(over="ignore"):
            h = U64(0)
            for v in tok[s:s + c]:
                h = h * _Q + v
        hashes.append(_finish(np.array([h], dtype=U64)))
        docs_of.append(np.array([d], dtype=np.int64))
    if not hashes:
        return np.empty(0, np.uint32), np.empty(0, np.int64)
    return np.concatenate(hashes), np.concatenate(docs_of).astype(np.int64)


def _word_kgrams(wcp: np.ndarray, wdoc: np.ndarray, tok_start: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Word k-grams of the word characters of word-shingled documents (each token hashed over its code points)."""
    first = np.flatnonzero(tok_start)  # first code point of each token
    tok_hash = _segment_hashes(wcp.astype(U64) + U64(1), first, np.r_[first[1:], len(wcp)])
    return _kgrams(tok_hash, wdoc[first].astype(np.int64), k)


def _finish(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # in place: h is a temporary of the caller's
        np.bitwise_xor(h, h >> U64(29), out=h)
        np.multiply(h, U64(0xBF58476D1CE4E5B9), out=h)
        np.bitwise_xor(h, h >> U64(32), out=h)
    return h.astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine32 permutation parameters datasketch uses for ``MinHash(num_perm, seed, scheme="affine32")``:
    an odd ``a`` and a ``b`` per permutation, drawn from numpy's ``RandomState(seed)`` in datasketch's order, so
    signatures are interchangeable with datasketch's (tested against datasketch itself). Drawn here rather than
    taken from a datasketch MinHash: importing datasketch (it imports scipy) cost every run ~0.9 s on the driver."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def signatures_flat(hashes: np.ndarray, doc_of: np.ndarray, n: int, num_perm: int, seed: int,
                    chunk: int = 1 << 20) -> np.ndarray:
    """Signatures of many documents from their token hashes (doc_of sorted): per permutation one vectorised
    multiply-add over all hashes of the block and one minimum.reduceat per document. A contiguous 1-D pass per
    permutation runs ~5x faster than one (hashes x num_perm) matrix, whose rows leave the caches. Rows of
    documents without shingles stay all-max (datasketch's empty MinHash)."""
    a, b = permutations(num_perm, seed)
    out = np.full((n, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if n == 0 or len(hashes) == 0:
        return out
    allh = _fmix32(hashes.astype(np.uint32))
    buf = np.empty(min(chunk, len(allh)), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for s in range(0, len(allh), chunk):  # bounded memory: a document may span chunks
            hv, docs = allh[s:s + chunk], doc_of[s:s + chunk]
            v = buf[:len(hv)]
            starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            rows = docs[starts]
            mins = np.empty((num_perm, len(starts)), dtype=np.uint32)
            for i in range(num_perm):
                np.multiply(hv, a[i], out=v)
                np.add(v, b[i], out=v)
                mins[i] = np.minimum.reduceat(v, starts)
            out[rows] = np.minimum(out[rows], mins.T)
    return out


def signature(hashes: np.ndarray, num_perm: int, seed: int, chunk: int = 4096) -> np.ndarray:
    """MinHash signature (num_perm uint32) of 32-bit token hashes; all-max for an empty set."""
    a, b = permutations(num_perm, seed)
    out = np.full(num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
    hv = _fmix32(hashes.astype(np.uint32))
    with np.errstate(over="ignore"):
        for s in range(0, len(hv), chunk):  # bounded memory for very long documents
            block = a[:, None] * hv[None, s:s + chunk] + b[:, None]
            np.minimum(out, block.min(axis=1), out=out)
    return out


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per band; the band index is mixed in, so keys of different bands never collide by design.
    ``sig``: one signature, or a (documents x num_perm) matrix (keys: documents x bands), in one vectorised pass."""
    m = sig[..., : bands * rows].reshape(*sig.shape[:-1], bands, rows).astype(U64)
    with np.errstate(over="ignore"):
        h = np.broadcast_to(np.arange(1, bands + 1, dtype=U64) * U64(0xD6E8FEB86659FD93), m.shape[:-1]).copy()
        for r in range(rows):
            h ^= m[..., r]
            h *= U64(0x100000001B3)
            h ^= h >> U64(31)
    return h.astype(np.int64)


# -------------------------------------------------------------------------------------- S-curve params
def _prob(j: float, b: int, r: int) -> float:
    return 1 - (1 - j ** r) ** b


def optimal_bands_rows(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """The (bands, rows) with b*r <= num_perm minimising weighted FP + FN areas of the S-curve (datasketch's
    recipe, integrated numerically here)."""
    xs_fp = np.linspace(0, threshold, 201)
    xs_fn = np.linspace(threshold, 1, 201)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid([_prob(x, b, r) for x in xs_fp], xs_fp)
            fn = np.trapezoid([1 - _prob(x, b, r) for x in xs_fn], xs_fn)
            err = fp * fp_weight + fn * (1 - fp_weight)
            if err < best_err:
                best, best_err = (b, r), err
    return best


# ------------------------------------------------------------------------------------------- operator
class MinHashParams(Params):
    num_perm: int = Field(112, ge=8, le=1024, description="Permutations (signature length).")
    bands: int | None = Field(14, ge=1, description="LSH bands (with rows); FineWeb: 14 x 8.")
    rows: int | None = Field(8, ge=1, description="Rows per band.")
    threshold: float | None = Field(None, gt=0, lt=1, description="Target Jaccard: derive bands/rows from it "
                                    "(set bands and rows to null).")
    ngram: int = Field(5, ge=1, description="Word n-gram size of shingles.")
    char_ngram: int = Field(5, ge=1, description="Character n-gram size for scripts written without spaces.")
    shingle: Literal["auto", "word", "char"] = Field("auto", description="auto: char n-grams when the text is "
                                                     "mostly CJK/Thai/Lao/Khmer/Myanmar/Hangul.")
    seed: int = Field(1, description="datasketch permutation seed.")
    verify_threshold: float | None = Field(None, gt=0, le=1, description="Drop candidate edges whose "
                                           "signature-estimated Jaccard is below this.")
    keep_highest: str | None = Field(None, description="Representative = highest value of this attribute "
                                     "(ties: smallest id); default: smallest id.")
    partitions: int = Field(8, ge=1, description="Partitions of each shuffle (at least; one per 256 MiB beyond).")
    save_index: str | None = Field(None, description="Directory to save this run's representatives' band keys.")
    against: list[str] = Field([], description="Band-key indexes of earlier runs to dedup against.")

    @model_validator(mode="after")
    def _bands(self) -> "MinHashParams":
        if self.threshold is None and (self.bands is None or self.rows is None):
            raise ValueError("give bands and rows, or threshold")
        if self.threshold is None and self.bands * self.rows > self.num_perm:  # type: ignore[operator]
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def band_rows(self) -> tuple[int, int]:
        if self.threshold is not None:
            return optimal_bands_rows(self.threshold, self.num_perm)
        return self.bands, self.rows  # type: ignore[return-value]


SIG_SCHEMA = pa.schema([("node", pa.int64()), ("id", pa.string()), ("rank", pa.float64()),
                        ("sig", pa.list_(pa.uint32()))])


class MinHashDedup(dedup.DedupOperator):
    """Near-duplicate clusters with MinHash LSH and distributed connected components."""

    name = "minhash_dedup"
    Params = MinHashParams
    tagger = "minhash"
    outputs = dedup.cluster_outputs("minhash_dedup", "minhash")

    def apply(self, ds, ctx: RunContext):
        p: MinHashParams = self.params  # type: ignore[assignment]
        bands, rows = p.band_rows()
        for path in p.against:  # before any work
            _check_index(path, p, bands, rows)
        ds, timer = self.materialize(ds, ctx)

        file_index = ctx.file_index
        sigs = self.stage_dataset(ctx, "signatures", lambda: ds.map_batches(
            _Signer(p, file_index), batch_format="pyarrow", batch_size=None))
        n_live = sigs.count()
        timer.done("signatures", n_live)

        def decide():
            if not p.against and fits_one_task(sigs):  # small input: every stage below in one task, same result
                import ray
                import ray.data

                decisions = ray.data.from_arrow_refs([ray.remote(num_cpus=1)(_decide_one_task).remote(
                    bands, rows, p.verify_threshold, *arrow_blocks(sigs))]).materialize()
                timer.done("decide_one_task", decisions.count())
            else:
                decisions = decide_distributed()
            if p.save_index:
                _save_index(sigs, decisions, keys_of=_BandRows(bands, rows), path=p.save_index,
                            partitions=p.partitions)
                with storage.open(f"{p.save_index}/{INDEX_MANIFEST}", "w") as f:
                    f.write(json.dumps(_index_manifest(p, bands, rows), sort_keys=True))
                timer.done("save_index", 0)
            return decisions

        def decide_distributed():
            keys = sigs.map_batches(_BandRows(bands, rows), batch_format="pyarrow", batch_size=None)
            for path in p.against:
                keys = keys.union(_load_index(path))
            edges = dedup.shuffle_map(keys, ["key"], p.partitions, _bucket_edges).materialize()
            timer.done("band_buckets", edges.count())

            if p.verify_threshold is not None:
                info = sigs.select_columns(["node", "sig"])
                edges = _verify(edges, info, p.verify_threshold, p.partitions).materialize()
                timer.done("verify", edges.count())

            from operators.dedup.components import connected_components

            members = connected_components(edges.select_columns(["u", "v"]), p.partitions).materialize()
            timer.done("components", members.count())

            members = members.map_batches(_with_roots, batch_format="pyarrow", batch_size=None)
            info = sigs.select_columns(["node", "id", "rank"])
            if p.against:
                info = info.union(*(_index_info(x) for x in p.against))
            decisions = dedup.choose_representatives(members, info, p.partitions).materialize()
            timer.done("representatives", decisions.count())
            return decisions

        return self.attach(ds, decide, ctx, timer, {
            "bands": bands, "rows": rows, "num_perm": p.num_perm, "documents": n_live,
            "bytes_per_document": {"signature_stage": p.num_perm * 4 + 8 + 16, "band_stage": bands * 16,
                                   "decision_stage": "~40 (duplicates only)"}})


class _Signer:
    def __init__(self, p: MinHashParams, file_index: dict[str, int]):
        self.p, self.file_index = p, file_index

    def __call__(self, table: pa.Table) -> pa.Table:
        p = self.p
        live = schema.live_mask(table)
        sub = table.filter(pa.array(live))
        nodes = schema.node_ids(sub, self.file_index)
        ranks = dedup.rank_value(sub, p.keep_highest)
        texts = [t or "" for t in sub.column("text").to_pylist()]
        sig = np.full((len(texts), p.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        for lo, hi in _slices(texts, SLICE_CHARS):
            sig[lo:hi] = self._sign(texts[lo:hi])
        flat = sig.reshape(-1)
        sig_col = pa.ListArray.from_arrays(pa.array(np.arange(0, len(flat) + 1, p.num_perm, dtype=np.int32)),
                                           pa.array(flat, pa.uint32()))
        return pa.table({"node": pa.array(nodes, pa.int64()), "id": sub.column("id"), "rank": pa.array(ranks),
                         "sig": sig_col}, schema=SIG_SCHEMA)


    def _sign(self, texts: list[str]) -> np.ndarray:
        p = self.p
        hv, dv = block_shingles(texts, p.ngram, p.char_ngram, p.shingle)
        return signatures_flat(hv, dv, len(texts), p.num_perm, p.seed)


# Characters of text per vectorised pass. The passes make several uint32/uint64 arrays as long as the text (code
# points, classes, prefix sums, powers of the polynomial): over a whole Ray block (tens of MB when blocks are large)
# they leave the caches and grow the powers table to the block's size (~2.5x slower per core on 5,000 4-KB
# documents than in slices). Measured on the clustered corpus: 128K 18.4, 256K 19.6, 512K 18.7, 1M 17.7 MB/s.
SLICE_CHARS = 1 << 18


def _slices(texts: list[str], limit: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of consecutive texts of about ``limit`` characters each (at least one text each)."""
    out, lo, size = [], 0, 0
    for i, t in enumerate(texts):
        if size and size + len(t) > limit:
            out.append((lo, i))
            lo, size = i, 0
        size += len(t)
    if lo < len(texts):
        out.append((lo, len(texts)))
    return out


class _BandRows:
    def __init__(self, bands: int, rows: int):
        self.bands, self.rows = bands, rows

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        if n == 0:
            return pa.table({"key": pa.array([], pa.int64()), "node": pa.array([], pa.int64())})
        flat = table.column("sig").combine_chunks().flatten().to_numpy().astype(np.uint32, copy=False)
        per = len(flat) // n
        sigs = flat.reshape(n, per)
        # no shingles (empty, or nothing left after normalisation): nothing to compare, so no bucket rows
        has = ~(sigs == np.iinfo(np.uint32).max).all(axis=1)
        sigs = sigs[has]
        keys = band_keys(sigs, self.bands, self.rows)
        nodes = table.column("node").to_numpy()[has]
        return pa.table({"key": pa.array(keys.reshape(-1), pa.int64()),
                         "node": pa.array(np.repeat(nodes, self.bands), pa.int64())})


def _bucket_edges(block: pa.Table) -> pa.Table:
    """Within each bucket (same band key), link every member to the smallest member."""
    key = block.column("key").to_numpy()
    node = block.column("node").to_numpy()
    if len(key) == 0:
        return pa.table({"u": pa.array([], pa.int64()), "v": pa.array([], pa.int64())})
    order = np.lexsort((node, key))
    key, node = key[order], node[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.diff(np.r_[starts, len(key)])
    root = np.repeat(node[starts], counts)
    sel = node != root
    pairs = np.unique(np.stack([node[sel], root[sel]], axis=1), axis=0) if sel.any() else np.empty((0, 2), np.int64)
    return pa.table({"u": pa.array(pairs[:, 0], pa.int64()), "v": pa.array(pairs[:, 1], pa.int64())})


def _verify(edges, info, threshold: float, partitions: int):
    """Keep edges whose endpoints' signatures agree on at least `threshold` of their positions."""
    sig_t = pa.list_(pa.uint32())
    left = dedup.hash_join(edges, info.rename_columns({"node": "u", "sig": "sig_u"}), "u", "inner", partitions,
                           {"u": pa.int64(), "v": pa.int64()}, {"u": pa.int64(), "sig_u": sig_t})
    both = dedup.hash_join(left, info.rename_columns({"node": "v", "sig": "sig_v"}), "v", "inner", partitions,
                           {"u": pa.int64(), "v": pa.int64(), "sig_u": sig_t}, {"v": pa.int64(), "sig_v": sig_t})

    def keep(block: pa.Table) -> pa.Table:
        if block.num_rows == 0:
            return pa.table({"u": pa.array([], pa.int64()), "v": pa.array([], pa.int64())})
        n = block.num_rows
        su = block.column("sig_u").combine_chunks().flatten().to_numpy().reshape(n, -1)
        sv = block.column("sig_v").combine_chunks().flatten().to_numpy().reshape(n, -1)
        est = (su == sv).mean(axis=1)
        mask = pa.array(est >= threshold)
        return block.select(["u", "v"]).filter(mask)

    return both.map_batches(keep, batch_format="pyarrow", batch_size=None)


def _decide_one_task(bands: int, rows: int, verify_threshold: float | None, *blocks: pa.Table) -> pa.Table:
    """Every stage after the signatures, for signatures small enough for one task (ONE_TASK_BYTES): the same
    functions over all rows at once that the distributed stages run per shuffled block (bucket edges, the
    signature check, components, representatives), so the same decisions (tested: both paths, one corpus)."""
    from operators.dedup.components import components_local

    t = pa.concat_tables([b for b in blocks if b.num_rows])
    edges = _bucket_edges(_BandRows(bands, rows)(t))
    node = t.column("node").to_numpy()
    order = np.argsort(node)
    if verify_threshold is not None and edges.num_rows:
        sig = t.column("sig").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
        su = sig[order[np.searchsorted(node, edges.column("u").to_numpy(), sorter=order)]]
        sv = sig[order[np.searchsorted(node, edges.column("v").to_numpy(), sorter=order)]]
        edges = edges.filter(pa.array((su == sv).mean(axis=1) >= verify_threshold))
    members = _with_roots(components_local(edges) if edges.num_rows else edges)
    at = order[np.searchsorted(node, members.column("node").to_numpy(), sorter=order)]
    joined = members.append_column("id", t.column("id").take(pa.array(at))).append_column(
        "rank", t.column("rank").take(pa.array(at)))
    return dedup.pick_representatives(joined)


def _with_roots(block: pa.Table) -> pa.Table:
    """(node, root) pairs plus (root, root) for each root, so representatives can be any member."""
    u = block.column("u").to_numpy()
    v = block.column("v").to_numpy()
    roots = np.unique(v)
    return pa.table({"node": pa.array(np.r_[u, roots], pa.int64()), "root": pa.array(np.r_[v, roots], pa.int64())})


# --------------------------------------------------------------------------------- incremental index
def _save_index(sigs, decisions, keys_of: _BandRows, path: str, partitions: int) -> None:
    """Band keys of every document this run keeps (representatives and singletons) -> parquet under `path`."""
    def dups_only(block: pa.Table) -> pa.Table:
        return block.filter(pc.invert(block.column("is_rep"))).select(["node"])

    dups = decisions.map_batches(dups_only, batch_format="pyarrow", batch_size=None)
    kept = dedup.hash_join(sigs, dups, "node", "left_anti", partitions, dict(zip(SIG_SCHEMA.names, SIG_SCHEMA.types)),
                           {"node": pa.int64()})
    if not storage.is_url(path):
        os.makedirs(path, exist_ok=True)
    kept.map_batches(keys_of, batch_format="pyarrow", batch_size=None).select_columns(["key"]).write_parquet(path)


INDEX_MANIFEST = "_curate_index.json"
# Bumped whenever band keys of the same text change (2: tokens hashed over code points, not UTF-8 bytes).
INDEX_FORMAT = 2


def _index_manifest(p: MinHashParams, bands: int, rows: int) -> dict:
    """What band keys depend on: an index is only comparable with a run that agrees on all of it."""
    return {"format": INDEX_FORMAT, "num_perm": p.num_perm, "seed": p.seed, "bands": bands, "rows": rows,
            "ngram": p.ngram, "char_ngram": p.char_ngram, "shingle": p.shingle}


def _check_index(path: str, p: MinHashParams, bands: int, rows: int) -> None:
    """An index made with other parameters (or an older key format) would match nothing, silently: refuse it."""
    from curate.config import ConfigError

    fs, root = storage.url_to_fs(path)
    if not fs.exists(root):  # nothing there at all: a path error (one line from the CLI, exit 2)
        raise FileNotFoundError(errno.ENOENT, "band-key index to dedup against not found", path)
    try:
        with storage.open(f"{path}/{INDEX_MANIFEST}", "r") as f:
            have = json.loads(f.read())
    except FileNotFoundError:
        raise ConfigError([f"minhash_dedup.against: {path}: no {INDEX_MANIFEST}: not a band-key index of this "
                           f"curate version (format {INDEX_FORMAT}); rebuild it with save_index"]) from None
    want = _index_manifest(p, bands, rows)
    diff = [f"{k}={have.get(k)!r} (this step: {v!r})" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise ConfigError([f"minhash_dedup.against: {path}: made with other parameters: " + ", ".join(diff)])


def _load_index(path: str):
    """External nodes: one negative node id per saved key (they rank first as representatives)."""
    import ray.data

    idx = ray.data.read_parquet(path)

    def tag(block: pa.Table) -> pa.Table:
        key = block.column("key").to_numpy()
        # a negative node per key, derived from the key so it is stable
        node = -(np.abs(key) % (1 << 62)) - 1
        return pa.table({"key": pa.array(key, pa.int64()), "node": pa.array(node, pa.int64())})

    return idx.map_batches(tag, batch_format="pyarrow", batch_size=None)


def _index_info(path: str):
    idx = _load_index(path)

    def info(block: pa.Table) -> pa.Table:
        node = block.column("node")
        return pa.table({"node": node, "id": pa.array(["external"] * len(node), pa.string()),
                         "rank": pa.array(np.full(len(node), np.inf))})

    return idx.map_batches(info, batch_format="pyarrow", batch_size=None)


