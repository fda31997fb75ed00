"""fineweb_quality: FineWeb's own quality signals (Penedo et al. 2024), as datatrove's FineWebQualityFilter
computes them. Scoring only: `filter` decides. In FineWeb they are computed on the text the C4 line filter left,
so the recipe runs this step after `edit`.

Over the lines of the text that are not blank (``text.split("\\n")``, lines kept as they are):

* ``punct_lines_frac``: lines ending in terminal punctuation (datatrove's set of 159 sentence-final characters:
  ``.``, ``!``, ``?``, ``。``, ... but not quotes, ``)`` or ``…``);
* ``short_lines_frac``: lines of at most ``short_line_length`` characters;
* ``dup_line_chars_frac``: characters of lines that repeat an earlier line, over the characters of the text
  without its newlines;
* ``newlines_per_word``: newlines over words (spaCy tokens, punctuation included, `text.py`).

Null for a text with no non-blank line.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from curate.operator import BatchOperator, Params, set_column
from scorers.fineweb.text import AUTO, Batch, characters, duplicates, row_languages, row_tokenizers, tokenizer

SIGNALS = ("punct_lines_frac", "short_lines_frac", "dup_line_chars_frac", "newlines_per_word")


class FineWebQualityParams(Params):
    language: str = Field("en", description="Tokenizer language for word counts (a spaCy language code), or "
                          "`auto`: each document's language (metadata.language, from langid).")
    short_line_length: int = Field(30, ge=0, description="A line of at most this many characters is short.")


def fineweb_signals(text: str, short: int, words) -> dict[str, float | None]:
    _, terminal = characters()
    lines = [ln for ln in text.split("\n") if ln.strip() != ""]
    if not lines:
        return dict.fromkeys(SIGNALS)
    n_words = len(words(text))
    return {
        "punct_lines_frac": sum(1 for ln in lines if ln.endswith(terminal)) / len(lines),
        "short_lines_frac": sum(1 for ln in lines if len(ln) <= short) / len(lines),
        "dup_line_chars_frac": duplicates(lines)[1] / len(text.replace("\n", "")),
        "newlines_per_word": text.count("\n") / n_words if n_words else None,
    }


class FineWebQuality(BatchOperator):
    """FineWeb's line-punctuation, short-line, duplicate-line and newline signals (datatrove's definitions)."""

    name = "fineweb_quality"
    Params = FineWebQualityParams
    outputs = {f"fineweb_quality__lines__{k}": pa.float64() for k in SIGNALS}

    def setup(self) -> None:
        if self.params.language != AUTO:
            tokenizer(self.params.language)

    def process(self, table: pa.Table) -> pa.Table:
        cols: dict[str, list] = {k: [] for k in SIGNALS}
        texts = table.column("text").to_pylist()
        langs = row_languages(self.params.language, table.column("metadata").to_pylist())
        toks = row_tokenizers(langs)
        with Batch(toks, texts):
            for text, tok in zip(texts, toks):
                found = fineweb_signals(text, self.params.short_line_length, tok.words) if text else {}
                for k, col in cols.items():
                    col.append(found.get(k))
        for k, col in cols.items():
            table = set_column(table, f"fineweb_quality__lines__{k}", pa.array(col, pa.float64()))
        return table
