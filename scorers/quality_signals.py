"""quality_signals: Gopher / C4 heuristic signals as attribute scores. Scoring only: `filter` decides.

Definitions follow Rae et al. 2021 ("Gopher", appendix A) and Raffel et al. 2020 (C4), as also used by
RedPajama-V2 and datatrove, computed on whitespace words:

* word_count, mean_word_length, symbol_to_word_ratio (``#`` and ``...``/``…`` per word)
* frac_lines_ellipsis (lines ending in an ellipsis), frac_lines_bullet (lines starting with a bullet)
* frac_words_alpha (words with at least one alphabetic character)
* stopword_count: English function words present (Gopher requires >= 2 of the, be, to, of, and, that, have, with)
* dup_line_frac / dup_line_char_frac: lines (and their characters) that repeat an earlier line
* dup_para_frac / dup_para_char_frac: the same for paragraphs (blank-line separated)
* top_2gram_char_frac .. top_4gram_char_frac: characters covered by the most frequent word n-gram
* dup_5gram_char_frac .. dup_10gram_char_frac: characters in word n-grams that occur more than once
* c4_lines_no_terminal_punct: fraction of lines not ending in terminal punctuation
* lorem_ipsum, curly_bracket (C4 signals, counts)

Word splitting on whitespace is wrong for Chinese/Japanese/Thai; those documents get small word counts, which
is why thresholds belong in `filter` rules that can be conditioned on the language (``langid__fasttext__en``).

Attribute names: ``quality_signals__heuristics__<signal>`` (set ``quality_signals``, tagger ``heuristics``).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa

from curate.operator import BatchOperator, Params, set_column

STOPWORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "‣", "●", "▪", "◦", "-", "*", "–", "—", "·")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？")
_NON_WORD = re.compile(r"^\W+$")


def _ngram_top_frac(words: list[str], n: int, total_chars: int) -> float:
    if len(words) < n or total_chars == 0:
        return 0.0
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    gram, count = grams.most_common(1)[0]
    if count <= 1:
        return 0.0
    return min(1.0, sum(len(w) for w in gram) * count / total_chars)


def _ngram_dup_frac(words: list[str], n: int, total_chars: int) -> float:
    """Share of word characters inside n-grams that occur more than once (each word counted once)."""
    if len(words) < n or total_chars == 0:
        return 0.0
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = np.zeros(len(words), dtype=bool)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i:i + n] = True
    return float(sum(len(w) for w, c in zip(words, covered) if c) / total_chars)


def _dup_fracs(items: list[str]) -> tuple[float, float]:
    items = [x for x in items if x.strip()]
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup = dup_chars = 0
    for x in items:
        if x in seen:
            dup += 1
            dup_chars += len(x)
        seen.add(x)
    return dup / len(items), dup_chars / max(1, sum(len(x) for x in items))


def signals(text: str) -> dict[str, float]:
    words = text.split()
    n_words = len(words)
    word_chars = sum(len(w) for w in words)
    lines = [ln.strip() for ln in text.split("\n")]
    nonempty = [ln for ln in lines if ln]
    paras = [p.strip() for p in re.split(r"\n\s*\n", text)]
    lowered = [w.lower().strip(".,;:!?\"'()[]") for w in words]
    n_lines = max(1, len(nonempty))
    dup_line, dup_line_chars = _dup_fracs(nonempty)
    dup_para, dup_para_chars = _dup_fracs(paras)
    out: dict[str, float] = {
        "word_count": float(n_words),
        "mean_word_length": word_chars / n_words if n_words else 0.0,
        "symbol_to_word_ratio": (text.count("#") + text.count("...") + text.count("…")) / n_words if n_words else 0.0,
        "frac_lines_ellipsis": sum(ln.endswith(("...", "…")) for ln in nonempty) / n_lines,
        "frac_lines_bullet": sum(ln.startswith(BULLETS) for ln in nonempty) / n_lines,
        "frac_words_alpha": sum(any(c.isalpha() for c in w) for w in words) / n_words if n_words else 0.0,
        "stopword_count": float(len(STOPWORDS.intersection(lowered))),
        "dup_line_frac": dup_line,
        "dup_line_char_frac": dup_line_chars,
        "dup_para_frac": dup_para,
        "dup_para_char_frac": dup_para_chars,
        "c4_lines_no_terminal_punct": sum(not ln.endswith(TERMINAL) for ln in nonempty) / n_lines,
        "lorem_ipsum": float(text.lower().count("lorem ipsum")),
        "curly_bracket": float(text.count("{") + text.count("}")),
    }
    for n in (2, 3, 4):
        out[f"top_{n}gram_char_frac"] = _ngram_top_frac(lowered, n, word_chars)
    for n in (5, 6, 7, 8, 9, 10):
        out[f"dup_{n}gram_char_frac"] = _ngram_dup_frac(lowered, n, word_chars)
    return out


SIGNAL_NAMES = tuple(signals("a b").keys())
PREFIX = "quality_signals__heuristics__"


class QualitySignalsParams(Params):
    pass


class QualitySignals(BatchOperator):
    """Gopher/C4 heuristic quality signals as document attributes."""

    name = "quality_signals"
    Params = QualitySignalsParams
    outputs = {f"{PREFIX}{k}": pa.float64() for k in SIGNAL_NAMES}

    def process(self, table: pa.Table) -> pa.Table:
        rows = [signals(t or "") for t in table.column("text").to_pylist()]
        for key in SIGNAL_NAMES:
            vals = np.array([r[key] for r in rows], dtype=np.float64)
            table = set_column(table, f"{PREFIX}{key}", pa.array(np.round(vals, 6)))
        return table
