"""Tokenized output in the `dolma tokens` layout, its reader, and per-language tokenizer metrics.

Layout (as `dolma tokens` writes it): ``part-<i>-<k>.npy`` is a raw token memmap WITHOUT an npy header, uint16
when the vocabulary fits in 65,536 ids, else uint32; ``part-<i>-<k>.csv.gz`` has no header and one row per
document: ``start,end,id,src,loc`` (token offsets, end exclusive; the source documents file; 1-based line in
it). BOS/EOS are added per document when configured. A document is never split across files.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from operators.shard.tokenizers import WORD


def token_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    return np.uint16 if vocab_size <= 65536 else np.uint32


def part_files(n: int) -> tuple[str, str]:
    """Shard ``n``'s token file and index, relative to the output root."""
    return f"tokens/part-{n:05d}-00000.npy", f"tokens/part-{n:05d}-00000.csv.gz"


def parse_index(data: bytes) -> list[tuple[int, int, str, str, int]]:
    """A part's ``start,end,id,src,loc`` rows from its csv.gz bytes."""
    rows = csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8")))
    return [(int(a), int(b), did, src, int(loc)) for a, b, did, src, loc in rows]


def encode_part(values: np.ndarray, offsets: np.ndarray, doc_ids: list[str], src: str) -> tuple[bytes, bytes]:
    """(token bytes, csv.gz bytes) of one part file from the ids as written (specials included, file dtype):
    ``values[offsets[i]:offsets[i+1]]`` is document i; lines are 1-based."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        zip(offsets[:-1].tolist(), offsets[1:].tolist(), doc_ids, [src] * len(doc_ids), range(1, len(doc_ids) + 1)))
    return values.tobytes(), gzip.compress(buf.getvalue().encode("utf-8"), compresslevel=1, mtime=0)


def read_part(npy: str | Path, vocab_size: int) -> list[dict[str, Any]]:
    """Documents of one token part: [{id, src, loc, tokens (np.ndarray)}], via a memmap (no copy)."""
    npy = Path(npy)
    arr = np.memmap(npy, dtype=token_dtype(vocab_size), mode="r") if npy.stat().st_size else np.empty(0)
    return [{"id": did, "src": src, "loc": loc, "tokens": arr[start:end]}
            for start, end, did, src, loc in parse_index(npy.with_suffix(".csv.gz").read_bytes())]


_COUNTS = ("docs", "chars", "tokens", "sampled", "sample_words", "sample_tokens", "whole")


class TokStats:
    """Per-language tokenizer metrics (after "Tokenization Standards for Linguistic Integrity" and Qtok):

    * chars_per_token: characters per token, over every document;
    * unique_tokens: distinct token ids used, over every document (a bitmap over the vocabulary per language, so
      merging the stats of many blocks costs vocabulary/8 bytes each, not a list of ids);
    * fertility: tokens per whitespace word, and whole_word_share ("%valid"-style): share of tokens whose
      surface, without its leading space, is a complete word of the text (the tokenizer kept the word whole
      rather than cutting it into pieces). Both on the documents ``sample`` selects: word splitting and the
      per-token check cost as much as a third of tokenizing, so the shard step samples by id hash (the same
      documents in every run and every partitioning), while `curate tokstats` checks everything.
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.n: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTS, 0))
        self.unique: dict[str, np.ndarray] = {}

    def add(self, langs: list[str | None], texts: list[str], ids: list[np.ndarray], tok: Any,
            sample: np.ndarray | None = None) -> None:
        """One batch of documents: language (None = und), text, token ids; ``sample`` marks the documents for
        fertility and the whole-word share (default: all); ``tok`` resolves token surfaces."""
        codes = [x or "und" for x in langs]
        n_chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.concatenate(ids) if ids else np.empty(0, np.uint32)
        names, inv = np.unique(np.asarray(codes, dtype=object), return_inverse=True) if codes else ([], [])
        for li, lang in enumerate(names):
            m = inv == li
            s = self.n[lang]
            s["docs"] += int(m.sum())
            s["chars"] += int(n_chars[m].sum())
            s["tokens"] += int(lengths[m].sum())
            used = flat if len(names) == 1 else flat[np.repeat(m, lengths)]
            bits = self.unique.setdefault(lang, np.zeros(self.vocab_size, dtype=bool))
            bits[used] = True
        for i in (np.flatnonzero(sample) if sample is not None else range(len(texts))):
            s = self.n[codes[i]]
            present = set(WORD.findall(texts[i]))
            u, c = np.unique(ids[i], return_counts=True)
            s["sampled"] += 1
            s["sample_words"] += len(texts[i].split())
            s["sample_tokens"] += int(lengths[i])
            s["whole"] += sum(k for t, k in zip(u.tolist(), c.tolist()) if tok.word_of(t) in present)

    def merge(self, other: dict[str, Any]) -> None:
        for lang, v in other.items():
            s = self.n[lang]
            for k in _COUNTS:
                s[k] += v[k]
            bits = np.unpackbits(np.frombuffer(base64.b64decode(v["unique_bits"]), np.uint8),
                                 count=self.vocab_size).astype(bool)
            self.unique[lang] = self.unique[lang] | bits if lang in self.unique else bits

    def raw(self) -> dict[str, Any]:
        """JSON-able, mergeable form (``merge``)."""
        out = {}
        for lang, v in self.n.items():
            bits = self.unique.get(lang, np.zeros(self.vocab_size, dtype=bool))
            out[lang] = {**v, "unique_bits": base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")}
        return out

    def report(self) -> dict[str, dict[str, float]]:
        out = {}
        for lang, v in sorted(self.n.items()):
            out[lang] = {
                "documents": v["docs"], "tokens": v["tokens"],
                "chars_per_token": round(v["chars"] / v["tokens"], 4) if v["tokens"] else None,
                "unique_tokens": int(self.unique[lang].sum()) if lang in self.unique else 0,
                "sampled_documents": v["sampled"],
                "fertility": round(v["sample_tokens"] / v["sample_words"], 4) if v["sample_words"] else None,
                "whole_word_share": round(v["whole"] / v["sample_tokens"], 4) if v["sample_tokens"] else None,
            }
        return out
