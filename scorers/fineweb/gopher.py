"""gopher: the Gopher repetition and quality signals (Rae et al. 2021, appendix A) as datatrove computes them for
FineWeb. Scoring only: `filter` decides, with FineWeb's thresholds in `recipes/fineweb.yaml`.

Definitions (datatrove 0.10.1's GopherRepetitionFilter and GopherQualityFilter; words are spaCy tokens,
punctuation included, see `text.py`):

Repetition (tagger ``repetition``), every fraction over the characters of the whole text (newlines included):

* ``dup_para_frac`` / ``dup_para_char_frac``: paragraphs (the stripped text split at 2+ newlines) that repeat an
  earlier one, as a share of paragraphs / their characters over the text;
* ``dup_line_frac`` / ``dup_line_char_frac``: the same for lines (the text split at runs of newlines; an empty
  first or last line counts);
* ``top_{2,3,4}_gram_char_frac``: characters of the most frequent word n-gram (joined with spaces; the first one
  seen among equally frequent ones, even if it occurs once) times its count; 0 for a text of fewer than n words;
* ``dup_{5..10}_gram_char_frac``: characters of repeated n-grams (joined without spaces) found scanning left to
  right, skipping past each repeat.

Quality (tagger ``quality``):

* ``words``: tokens with a character outside the punctuation set; ``mean_word_length`` over those (null if none);
* ``hash_ratio`` / ``ellipsis_ratio``: ``#`` characters / ``...`` and ``…`` occurrences per token (all tokens);
* ``bullet_lines_frac`` / ``end_ellipsis_lines_frac``: lines (``str.splitlines``) starting with ``•`` or ``-`` /
  ending in ``...`` or ``…``;
* ``alpha_words_frac``: tokens with at least one alphabetic character, over all tokens;
* ``stop_words``: how many distinct ``stop_words`` occur as tokens (case-sensitive).

An empty text gets nulls (a `keep:` rule then drops it). ``language`` picks the tokenizer (spaCy's code).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter

import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.operator import BatchOperator, Params, set_column
from scorers.fineweb.text import AUTO, Batch, characters, duplicates, row_languages, row_tokenizers, tokenizer

# Gopher's stop words (Rae et al. 2021): a document needs two of them to be running text
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")

REPETITION = ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac",
              *(f"top_{n}_gram_char_frac" for n in TOP_NGRAMS), *(f"dup_{n}_gram_char_frac" for n in DUP_NGRAMS))
QUALITY_FLOAT = ("mean_word_length", "hash_ratio", "ellipsis_ratio", "bullet_lines_frac", "end_ellipsis_lines_frac",
                 "alpha_words_frac")
QUALITY_INT = ("words", "stop_words")


class GopherParams(Params):
    language: str = Field("en", description="Tokenizer language (a spaCy language code: en, de, fr, ...), or "
                          "`auto`: each document's language (metadata.language, from langid).")
    stop_words: tuple[str, ...] = Field(STOP_WORDS, min_length=1, description="Words counted by `stop_words` "
                                        "(distinct, case-sensitive); Gopher's eight English ones by default.")
    stop_words_by_language: dict[str, tuple[str, ...]] = Field(
        {}, description="Stop words per document language (with `language: auto`); others use `stop_words`.")


def top_ngram_chars(words: list[str], n: int, joined: tuple[str, list[int]] | None = None) -> int:
    """Characters of the most frequent n-gram (space-joined) times its count; 0 if the text has no n-gram."""
    if len(words) < n:
        return 0
    s, off = joined or _joined(words, " ")
    counts = Counter([s[off[i]:off[i + n] - 1] for i in range(len(words) - n + 1)])
    gram, count = counts.most_common(1)[0]
    return len(gram) * count


def repeated_ngram_chars(words: list[str], n: int, joined: tuple[str, list[int]] | None = None) -> int:
    """Characters (no spaces) of the n-grams that repeat an earlier one, scanning left to right and moving past
    a repeat as a whole, so overlapping repeats are not counted twice."""
    s, off = joined or _joined(words, "")
    grams = [s[off[i]:off[i + n]] for i in range(len(words) - n + 1)]
    if len(set(grams)) == len(grams):  # no n-gram repeats (most texts, for n >= 5): nothing to scan
        return 0
    seen: set[str] = set()
    repeated, i = 0, 0
    while i < len(grams):
        gram = grams[i]
        if gram in seen:
            repeated += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated


def _joined(words: list[str], sep: str) -> tuple[str, list[int]]:
    """The words joined by ``sep`` (and one ``sep`` after the last) and where each begins: an n-gram joined by
    ``sep`` is then one slice of the string (its trailing separator cut off) instead of a join."""
    return sep.join(words) + sep, list(itertools.accumulate((len(w) + len(sep) for w in words), initial=0))


def repetition(text: str, words: list[str]) -> dict[str, float | None]:
    size = len(text)
    paragraphs = _PARAGRAPHS.split(text.strip())
    lines = _LINES.split(text)
    para_n, para_chars = duplicates(paragraphs)
    line_n, line_chars = duplicates(lines)
    out: dict[str, float | None] = {
        "dup_para_frac": para_n / len(paragraphs), "dup_para_char_frac": para_chars / size,
        "dup_line_frac": line_n / len(lines), "dup_line_char_frac": line_chars / size,
    }
    spaced, packed = _joined(words, " "), _joined(words, "")
    for n in TOP_NGRAMS:
        out[f"top_{n}_gram_char_frac"] = top_ngram_chars(words, n, spaced) / size
    for n in DUP_NGRAMS:
        out[f"dup_{n}_gram_char_frac"] = repeated_ngram_chars(words, n, packed) / size
    return out


@functools.lru_cache(maxsize=1 << 18)
def _kind(word: str) -> tuple[bool, bool]:
    """(has a character outside the punctuation set, has an alphabetic character) of a token."""
    punct, _ = characters()
    return any(ch not in punct for ch in word), any(c.isalpha() for c in word)


def quality(text: str, words: list[str], stop_words: frozenset[str]) -> dict[str, float | int | None]:
    kinds = [_kind(w) for w in words]
    lengths = [len(w) for w, (word, _) in zip(words, kinds) if word]
    n = len(words)
    lines = text.splitlines()
    return {
        "words": len(lengths),
        "mean_word_length": float(np.mean(lengths)) if lengths else None,
        "hash_ratio": text.count("#") / n if n else None,
        "ellipsis_ratio": (text.count("...") + text.count("…")) / n if n else None,
        "bullet_lines_frac": sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines) if lines else None,
        "end_ellipsis_lines_frac": sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines)
        if lines else None,
        "alpha_words_frac": sum(alpha for _, alpha in kinds) / n if n else None,
        "stop_words": len(stop_words.intersection(words)),
    }


class Gopher(BatchOperator):
    """Gopher repetition and quality signals with datatrove's (FineWeb's) definitions."""

    name = "gopher"
    Params = GopherParams
    outputs = {**{f"gopher__repetition__{k}": pa.float64() for k in REPETITION},
               **{f"gopher__quality__{k}": pa.float64() for k in QUALITY_FLOAT},
               **{f"gopher__quality__{k}": pa.int64() for k in QUALITY_INT}}

    def setup(self) -> None:
        if self.params.language != AUTO:
            tokenizer(self.params.language)  # fails here, at set-up, for a language spaCy cannot tokenize
        self.stop = frozenset(self.params.stop_words)
        self.stop_by = {lang: frozenset(w) for lang, w in self.params.stop_words_by_language.items()}

    def process(self, table: pa.Table) -> pa.Table:
        cols: dict[str, list] = {c: [] for c in self.outputs}
        texts = table.column("text").to_pylist()
        langs = row_languages(self.params.language, table.column("metadata").to_pylist())
        toks = row_tokenizers(langs)
        with Batch(toks, texts):
            for text, tok, lang in zip(texts, toks, langs):
                if not text:
                    for col in cols.values():
                        col.append(None)
                    continue
                words = tok.words(text)
                for k, v in repetition(text, words).items():
                    cols[f"gopher__repetition__{k}"].append(v)
                for k, v in quality(text, words, self.stop_by.get(lang, self.stop)).items():
                    cols[f"gopher__quality__{k}"].append(v)
        for c, typ in self.outputs.items():
            table = set_column(table, c, pa.array(cols[c], typ))
        return table
