"""Sentence-boundary data and scoring shared by the segmenter's training, its tests and bench/segment.py.

Data: the sentence-segmented JSONL in ``shared/data/sentences`` (one document a line with its gold ``sentences``).
Corruptions follow SaT's evaluation: lower-casing, removing punctuation, both. A document is rebuilt from its
corrupted sentences (joined as in the original: one space, or nothing for Chinese), so the gold boundaries move
with the text. A boundary is the index of a sentence's last character; the end of the document is not counted
(every segmenter gets it for free).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

CORRUPTIONS = ("clean", "lower", "nopunct", "both")


@dataclass
class Doc:
    lang: str
    sentences: list[str]
    joiner: str


@dataclass
class PRF:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, gold: set[int], pred: set[int]) -> None:
        self.tp += len(gold & pred)
        self.fp += len(pred - gold)
        self.fn += len(gold - pred)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_docs(path: str | Path) -> list[Doc]:
    """Documents of one ``<lang>.jsonl`` file."""
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            sents = [s for s in r["sentences"] if s.strip()]
            joiner = "" if r["text"] == "".join(r["sentences"]) else " "
            docs.append(Doc(r["lang"], sents, joiner))
    return docs


def load_split(root: str | Path, split: str) -> dict[str, list[Doc]]:
    root = Path(root) / split
    return {p.stem: load_docs(p) for p in sorted(root.glob("*.jsonl"))}


def strip_punct(s: str) -> str:
    return " ".join("".join(ch for ch in s if not unicodedata.category(ch).startswith("P")).split())


def corrupt(sentence: str, how: str) -> str:
    if how in ("lower", "both"):
        sentence = sentence.lower()
    if how in ("nopunct", "both"):
        sentence = strip_punct(sentence)
    return sentence.strip()


def build(doc: Doc, how: str, joiner: str | None = None) -> tuple[str, set[int]]:
    """The corrupted document text and its gold boundary indices (all sentence ends but the last)."""
    j = doc.joiner if joiner is None else joiner
    sents = [c for c in (corrupt(s, how) for s in doc.sentences) if c]
    ends, pos = [], 0
    for i, s in enumerate(sents):
        pos += len(s)
        ends.append(pos - 1)
        if i < len(sents) - 1:
            pos += len(j)
    return j.join(sents), set(ends[:-1])


def boundaries_from_spans(text: str, spans: list) -> set[int]:
    """Index of the last non-space character of every span except the last one."""
    out = set()
    for s in spans[:-1]:
        a, b = int(s[0]), int(s[1])
        k = b - 1
        while k > a and text[k].isspace():
            k -= 1
        out.add(k)
    return out


def boundaries_from_sentences(text: str, sentences: list[str]) -> set[int]:
    """For splitters that return strings: locate each sentence in order and take its last character."""
    out, pos = set(), 0
    for s in sentences[:-1]:
        s = s.strip()
        if not s:
            continue
        k = text.find(s, pos)
        if k < 0:
            continue
        pos = k + len(s)
        out.add(pos - 1)
    return out


@dataclass
class Table:
    """F1 per (system, corruption, language)."""

    rows: dict = field(default_factory=dict)

    def put(self, system: str, how: str, lang: str, prf: PRF) -> None:
        self.rows[(system, how, lang)] = prf

    def macro(self, system: str, how: str, langs: list[str]) -> float:
        vals = [self.rows[(system, how, lang)].f1 for lang in langs if (system, how, lang) in self.rows]
        return sum(vals) / len(vals) if vals else 0.0
