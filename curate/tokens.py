"""Tokenized output in the `dolma tokens` layout, its reader, and per-language tokenizer metrics.

Layout (as `dolma tokens` writes it): ``part-<i>-<k>.npy`` is a raw token memmap WITHOUT an npy header, uint16
when the vocabulary fits in 65,536 ids, else uint32; ``part-<i>-<k>.csv.gz`` has no header and one row per
document: ``start,end,id,src,loc`` (token offsets, end exclusive; the source documents file; 1-based line in
it). BOS/EOS are added per document when configured. A document is never split across files.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def token_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    return np.uint16 if vocab_size <= 65536 else np.uint32


def encode_part(values: np.ndarray, offsets: np.ndarray, doc_ids: list[str], src: str, vocab_size: int,
                bos: int | None, eos: int | None) -> tuple[bytes, bytes, int]:
    """(token bytes, csv.gz bytes, total tokens) for one part file, from the flat token ids of its documents in
    order (``values[offsets[i]:offsets[i+1]]`` is document i); BOS/EOS inserted with numpy, lines 1-based."""
    dtype = token_dtype(vocab_size)
    n = len(doc_ids)
    lengths = np.diff(offsets).astype(np.int64)
    extra = (bos is not None) + (eos is not None)
    new_len = lengths + extra
    ends = np.cumsum(new_len)
    starts = ends - new_len
    out = np.empty(int(ends[-1]) if n else 0, dtype=dtype)
    body_start = starts + (1 if bos is not None else 0)
    if bos is not None:
        out[starts] = bos
    if eos is not None:
        out[ends - 1] = eos
    # scatter each document's body: position of every value = its document's body start + its index within it
    doc_of = np.repeat(np.arange(n), lengths)
    within = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
    out[body_start[doc_of] + within] = values
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        zip(starts.tolist(), ends.tolist(), doc_ids, [src] * n, range(1, n + 1)))
    return out.tobytes(), gzip.compress(buf.getvalue().encode("utf-8"), mtime=0), int(ends[-1]) if n else 0


def read_part(npy: str | Path, vocab_size: int) -> list[dict[str, Any]]:
    """Documents of one token part: [{id, src, loc, tokens (np.ndarray)}], via a memmap (no copy)."""
    npy = Path(npy)
    arr = np.memmap(npy, dtype=token_dtype(vocab_size), mode="r") if npy.stat().st_size else np.empty(0)
    index = gzip.decompress(npy.with_suffix(".csv.gz").read_bytes()).decode("utf-8")
    out = []
    for start, end, did, src, loc in csv.reader(io.StringIO(index)):
        out.append({"id": did, "src": src, "loc": int(loc), "tokens": arr[int(start):int(end)]})
    return out


_WORD = re.compile(r"\w+", re.UNICODE)


class TokStats:
    """Per-language tokenizer metrics (after "Tokenization Standards for Linguistic Integrity" and Qtok):

    * fertility: tokens per whitespace word; chars_per_token: characters per token;
    * unique_tokens: distinct token ids used;
    * whole_word_share ("%valid"-style): share of tokens whose surface form, without its leading space, is a
      complete word of the text (the tokenizer kept the word whole rather than cutting it into pieces).
    """

    def __init__(self) -> None:
        self.n = defaultdict(lambda: {"docs": 0, "words": 0, "chars": 0, "tokens": 0, "whole": 0, "checked": 0})
        self.unique: dict[str, set[int]] = defaultdict(set)

    def add(self, lang: str | None, text: str, ids: list[int], surfaces: list[str] | None = None,
            track_unique: bool = True) -> None:
        s = self.n[lang or "und"]
        s["docs"] += 1
        s["words"] += len(text.split())
        s["chars"] += len(text)
        s["tokens"] += len(ids)
        if track_unique:  # callers with many documents add the unique ids in bulk (numpy) instead
            self.unique[lang or "und"].update(ids)
        if surfaces is not None:
            words = set(_WORD.findall(text))
            s["checked"] += len(surfaces)
            s["whole"] += sum(1 for t in surfaces if t.strip() and t.strip() in words and _WORD.fullmatch(t.strip()))

    def merge(self, other: dict[str, Any]) -> None:
        for lang, v in other.items():
            s = self.n[lang]
            for k in ("docs", "words", "chars", "tokens", "whole", "checked"):
                s[k] += v[k]
            self.unique[lang].update(v["unique_ids"])

    def raw(self) -> dict[str, Any]:
        return {lang: {**v, "unique_ids": sorted(self.unique[lang])} for lang, v in self.n.items()}

    def report(self) -> dict[str, dict[str, float]]:
        out = {}
        for lang, v in sorted(self.n.items()):
            out[lang] = {
                "documents": v["docs"], "tokens": v["tokens"],
                "fertility": round(v["tokens"] / v["words"], 4) if v["words"] else None,
                "chars_per_token": round(v["chars"] / v["tokens"], 4) if v["tokens"] else None,
                "unique_tokens": len(self.unique[lang]),
                "whole_word_share": round(v["whole"] / v["checked"], 4) if v["checked"] else None,
            }
        return out
