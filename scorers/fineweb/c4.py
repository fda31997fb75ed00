"""c4: the C4 line filter (Raffel et al. 2020) as datatrove runs it for FineWeb, as spans to cut and document
signals. Scoring only: which lines go is written as span attributes, one per rule; `edit` cuts them out, `filter`
drops documents on the signals. Together they give exactly the text datatrove's C4QualityFilter leaves.

Lines are ``str.splitlines()`` lines, each stripped. In order, per line (the first rule that applies decides):

* ``too_long_word``: a whitespace word longer than ``max_word_length`` characters: the line goes;
* citation markers (``[1]``, ``[]``, ``[edit]``, ``[citation needed]``) are cut out of the line (``citation``);
* ``no_terminal_punct`` (off in FineWeb): the line does not end in terminal punctuation, or ends in ``...``;
* ``too_few_words``: fewer than ``min_words_per_line`` whitespace words (counted before the citations went);
* ``lorem ipsum`` anywhere in the line: the document is marked (``c4__doc__lorem_ipsum`` = 1) and reading stops;
* ``javascript`` in the line (any case): the line goes;
* ``{`` in the line: the document is marked (``c4__doc__curly_bracket`` = 1) and reading stops;
* ``policy``: the line holds one of C4's policy phrases ("terms of use", "privacy policy", "cookie policy",
  "uses cookies", "use of cookies", "use cookies");
* else the line is kept, and its sentences (spaCy's sentencizer, `text.py`) add to ``c4__doc__sentences``.

Because reading stops at the first ``lorem ipsum`` or ``{`` line, at most one of the two marks is set: the one
C4's filter would have dropped the document for. The kept lines are joined by single newlines and the result
stripped; the spans say how: ``whitespace`` (the ends of kept lines, the ends of the text), ``newline`` (a line
break other than ``\\n`` between kept lines, replaced by ``\\n``), and the removed lines with their line breaks.

Span attributes ``c4__lines__<rule>`` (offsets into the text before the edit) and document signals
``c4__doc__{sentences, lines_kept, lorem_ipsum, curly_bracket}``. Null for an empty text.
"""

from __future__ import annotations

import re

import pyarrow as pa
from pydantic import Field

from curate.operator import BatchOperator, Params, set_column
from curate.schema import SPANS
from scorers.fineweb.text import AUTO, Batch, row_languages, row_tokenizers, tokenizer

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
END_PUNCTUATION = (".", "?", "!", '"', "'")
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# every span rule, in the order the filter applies them (`edit` takes them as `c4__lines__*`)
SPAN_RULES = ("too_long_word", "citation", "no_terminal_punct", "too_few_words", "javascript", "policy",
              "whitespace", "newline")
DOC = ("sentences", "lines_kept", "lorem_ipsum", "curly_bracket")


class C4Params(Params):
    language: str = Field("en", description="Tokenizer language for sentence counts (a spaCy language code), or "
                          "`auto`: each document's language (metadata.language, from langid).")
    max_word_length: int = Field(1000, description="Lines with a longer whitespace word go (-1: no limit).")
    min_words_per_line: int = Field(3, ge=0, description="Lines with fewer whitespace words go.")
    remove_citations: bool = Field(True, description="Cut [1], [], [edit], [citation needed] out of lines.")
    filter_no_terminal_punct: bool = Field(False, description="Lines not ending in . ? ! \" ' (or ending in "
                                           "...) go (C4 does this; FineWeb does not).")
    filter_lorem_ipsum: bool = Field(True, description="Mark documents with a `lorem ipsum` line.")
    filter_javascript: bool = Field(True, description="Lines mentioning javascript go.")
    filter_curly_bracket: bool = Field(True, description="Mark documents with a `{` line.")
    filter_policy: bool = Field(True, description="Lines with a cookie/privacy/terms policy phrase go.")


class _Ops:
    """The edit of one text as segments over it, in order: kept, removed (rule) or replaced (rule, text)."""

    def __init__(self) -> None:
        self.segs: list[list] = []  # [start, end, rule or None, replacement or None]

    def keep(self, a: int, b: int) -> None:
        if b > a:
            self.segs.append([a, b, None, None])

    def cut(self, a: int, b: int, rule: str, replacement: str | None = None) -> None:
        if b > a:
            self.segs.append([a, b, rule, replacement])

    def strip_ends(self, text: str) -> None:
        """The final ``.strip()`` of the joined lines: whitespace at either end of what is left goes too."""
        self._strip(text, leading=True)
        self._strip(text, leading=False)

    def _strip(self, text: str, leading: bool) -> None:
        i = 0 if leading else len(self.segs) - 1
        while 0 <= i < len(self.segs):
            a, b, rule, repl = self.segs[i]
            step = 1 if leading else -1
            if rule is not None:
                if repl is not None:  # a newline put in: whitespace, so it goes
                    self.segs[i] = [a, b, "whitespace", None]
                i += step
                continue
            chars = text[a:b]
            rest = chars.lstrip() if leading else chars.rstrip()
            if len(rest) == len(chars):
                return
            if not rest:
                self.segs[i] = [a, b, "whitespace", None]
                i += step
                continue
            if leading:
                at = a + len(chars) - len(rest)
                self.segs[i:i + 1] = [[a, at, "whitespace", None], [at, b, None, None]]
            else:
                at = a + len(rest)
                self.segs[i:i + 1] = [[a, at, None, None], [at, b, "whitespace", None]]
            return

    def spans(self) -> dict[str, list[list[float]]]:
        out: dict[str, list[list[float]]] = {}
        for a, b, rule, _repl in self.segs:
            if rule is None:
                continue
            spans = out.setdefault(rule, [])
            if spans and spans[-1][1] == a:  # adjacent pieces of one rule: one span
                spans[-1][1] = float(b)
            else:
                spans.append([float(a), float(b), 1.0])
        return out

    def result(self, text: str) -> str:
        return "".join(text[a:b] if rule is None else (repl or "") for a, b, rule, repl in self.segs)


def c4_lines(text: str, p: C4Params, sentences) -> tuple[dict[str, list[list[float]]], dict[str, int], str]:
    """(spans per rule, document signals, the text the edit leaves) for one text."""
    ops = _Ops()
    doc = {"sentences": 0, "lines_kept": 0, "lorem_ipsum": 0, "curly_bracket": 0}
    pos = 0
    for raw in text.splitlines(keepends=True):
        ending = 2 if raw.endswith("\r\n") else 1 if raw[-1] in LINE_BREAKS else 0
        a, b, c = pos, pos + len(raw) - ending, pos + len(raw)
        pos = c
        line = text[a:b]
        stripped = line.strip()
        s0 = a + len(line) - len(line.lstrip())
        s1 = s0 + len(stripped)
        words = stripped.split()
        if p.max_word_length != -1 and any(len(w) > p.max_word_length for w in words):
            ops.cut(a, c, "too_long_word")
            continue
        cites = [(s0 + m.start(), s0 + m.end()) for m in CITATION.finditer(stripped)] if p.remove_citations else []
        cleaned = CITATION.sub("", stripped) if cites else stripped
        if p.filter_no_terminal_punct and (not cleaned.endswith(END_PUNCTUATION) or cleaned.endswith("...")):
            ops.cut(a, c, "no_terminal_punct")
            continue
        if len(words) < p.min_words_per_line:
            ops.cut(a, c, "too_few_words")
            continue
        low = cleaned.lower()
        if p.filter_lorem_ipsum and "lorem ipsum" in low:
            doc["lorem_ipsum"] = 1
            ops.cut(a, len(text), "lorem_ipsum")  # reading stops: the document is dropped
            break
        if p.filter_javascript and "javascript" in low:
            ops.cut(a, c, "javascript")
            continue
        if p.filter_curly_bracket and "{" in cleaned:
            doc["curly_bracket"] = 1
            ops.cut(a, len(text), "curly_bracket")
            break
        if p.filter_policy and any(x in low for x in POLICY):
            ops.cut(a, c, "policy")
            continue
        doc["sentences"] += sentences(cleaned)
        doc["lines_kept"] += 1
        ops.cut(a, s0, "whitespace")
        at = s0
        for x, y in cites:
            ops.keep(at, x)
            ops.cut(x, y, "citation")
            at = y
        ops.keep(at, s1)
        ops.cut(s1, b, "whitespace")
        if ending:
            if text[b:c] == "\n":
                ops.keep(b, c)
            else:
                ops.cut(b, c, "newline", "\n")
    ops.strip_ends(text)
    return ops.spans(), doc, ops.result(text)


class C4(BatchOperator):
    """C4's line filter as spans to cut (`edit` applies them) and document signals (`filter` decides)."""

    name = "c4"
    Params = C4Params
    outputs = {**{f"c4__lines__{r}": SPANS for r in (*SPAN_RULES, "lorem_ipsum", "curly_bracket")},
               **{f"c4__doc__{k}": pa.int64() for k in DOC}}

    def setup(self) -> None:
        if self.params.language != AUTO:
            tokenizer(self.params.language)

    def process(self, table: pa.Table) -> pa.Table:
        spans: dict[str, list] = {c: [] for c in self.outputs if c.startswith("c4__lines__")}
        docs: dict[str, list] = {k: [] for k in DOC}
        texts = table.column("text").to_pylist()
        langs = row_languages(self.params.language, table.column("metadata").to_pylist())
        toks = row_tokenizers(langs)
        with Batch(toks, texts):
            for text, tok in zip(texts, toks):
                if not text:
                    for col in (*spans.values(), *docs.values()):
                        col.append(None)
                    continue
                found, doc, _ = c4_lines(text, self.params, tok.sentences)
                for c, col in spans.items():
                    col.append(found.get(c[len("c4__lines__"):], []))
                for k, col in docs.items():
                    col.append(doc[k])
        for c, col in spans.items():
            table = set_column(table, c, pa.array(col, SPANS))
        for k, col in docs.items():
            table = set_column(table, f"c4__doc__{k}", pa.array(col, pa.int64()))
        return table
