"""edit: the deciding step for text edits. Cuts out, or replaces, the spans that earlier steps wrote as span
attributes (C4's removed lines, PII), as dolma's mixer applies ``span_replacement``.

Scoring stays separate from deciding: a scorer only says where (``c4__lines__javascript``: spans, each a rule);
this step changes the text, and says what it did:

    - name: edit
      apply:
        - {spans: c4__lines__newline, replace: "\\n"}   # a rule's spans replaced by a string
        - {spans: "c4__lines__*"}                       # cut out (a * matches any attribute names)

Each span attribute an earlier step made goes to the first entry whose pattern matches it. Spans are applied in
text order; one that starts inside a span already applied is clipped to what is left of it. Then:

* every other span attribute of the document (sentence spans, ...) is moved to the new offsets, so attribute
  files keep describing the text that is written; spans wholly inside a cut piece go; the applied attributes stay
  as markers where their pieces were (empty spans for cuts, the replacement's extent for replacements);
* the document's ``_edits`` record gets, per rule (attribute), the pieces and characters cut or replaced and the
  first ``keep_pieces`` pieces themselves (their new offset and up to ``keep_chars`` characters of the text
  that went): stats.json counts edited documents per step and rule, the per-document stats parquet has the
  record (``edits``), the dashboard shows it;
* a document the edit leaves empty (or only whitespace) is dropped, reason ``empty_after_edit``.
"""

from __future__ import annotations

import bisect
import fnmatch
import json

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from curate import schema
from curate.operator import BatchOperator, Params, mark, set_column


class Apply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spans: str = Field(description="A span attribute made by an earlier step, or a pattern with * over names.")
    replace: str | None = Field(None, description="Replace each span by this string (null: cut it out).")


class EditParams(Params):
    apply: list[Apply] = Field(min_length=1, description="Span attributes to apply, in order of precedence.")
    keep_pieces: int = Field(20, ge=0, description="Pieces per rule and document kept in the edit record.")
    keep_chars: int = Field(200, ge=0, description="Characters of each kept piece (the rest is counted).")


def span_columns(available: dict[str, pa.DataType]) -> list[str]:
    return sorted(c for c, t in available.items() if schema.is_attribute(c) and t == schema.SPANS)


def resolve(rules: list[Apply], columns: list[str]) -> dict[str, str | None]:
    """Span attribute -> its replacement (None: cut), by the first rule whose pattern matches it."""
    out: dict[str, str | None] = {}
    for c in columns:
        for r in rules:
            if fnmatch.fnmatchcase(c, r.spans):
                out[c] = r.replace
                break
    return out


class Remap:
    """Old offsets -> new ones after applying sorted, disjoint edits ``(start, end, replacement)``."""

    def __init__(self, edits: list[tuple[int, int, str]]):
        self.starts = [s for s, _, _ in edits]
        self.edits = edits
        self.shift = [0]  # shift after each edit
        for s, e, r in edits:
            self.shift.append(self.shift[-1] + len(r) - (e - s))

    def __call__(self, pos: int, end: bool) -> int:
        """New offset of ``pos``; inside an edited piece, its new start (``end`` False) or end (True)."""
        i = bisect.bisect_right(self.starts, pos) - 1
        if i < 0:
            return pos
        s, e, r = self.edits[i]
        if pos >= e:
            return pos + self.shift[i + 1]
        base = s + self.shift[i]
        return base + (len(r) if end and pos > s else 0)


def apply_spans(text: str, spans: list[tuple[int, int, str, str | None]]
                ) -> tuple[str, list[tuple[int, int, str, str]], Remap]:
    """``text`` with ``spans`` ``(start, end, rule, replacement or None)`` applied in text order: (new text, the
    edits as applied ``(start, end, rule, replacement)``, the offset map)."""
    applied: list[tuple[int, int, str, str]] = []
    at = 0
    for s, e, rule, repl in sorted(spans, key=lambda x: (x[0], -x[1])):
        s, e = max(s, at, 0), min(e, len(text))
        if e <= s:
            continue
        applied.append((s, e, rule, repl or ""))
        at = e
    pieces, at = [], 0
    for s, e, _rule, repl in applied:
        pieces.append(text[at:s])
        pieces.append(repl)
        at = e
    pieces.append(text[at:])
    return "".join(pieces), applied, Remap([(s, e, r) for s, e, _, r in applied])


class Edit(BatchOperator):
    """Cuts or replaces the spans of earlier steps' span attributes; moves the other spans; records the edits."""

    name = "edit"
    Params = EditParams

    @classmethod
    def check(cls, params: EditParams, available: dict[str, pa.DataType]) -> None:  # type: ignore[override]
        cols = span_columns(available)
        for i, r in enumerate(params.apply):
            if not any(fnmatch.fnmatchcase(c, r.spans) for c in cols):
                raise ValueError(f"apply[{i}].spans: {r.spans!r} matches no span attribute of an earlier step "
                                 f"(span attributes: {', '.join(cols) or 'none'})")

    def process(self, table: pa.Table) -> pa.Table:
        p: EditParams = self.params  # type: ignore[assignment]
        cols = span_columns({f.name: f.type for f in table.schema})
        actions = resolve(p.apply, cols)
        others = [c for c in cols if c not in actions]
        values = {c: table.column(c).to_pylist() for c in cols}
        texts = table.column("text").to_pylist()
        records = table.column(schema.EDITS).to_pylist() if schema.EDITS in table.column_names \
            else [None] * table.num_rows
        emptied = [False] * table.num_rows
        for i, text in enumerate(texts):
            if not text:
                continue
            spans = [(int(sp[0]), int(sp[1]), c, repl) for c, repl in actions.items() for sp in (values[c][i] or [])]
            if not spans:
                continue
            new, applied, remap = apply_spans(text, spans)
            if not applied:
                continue
            texts[i] = new
            emptied[i] = not new.strip()
            for c in others:  # spans of other attributes follow the text; those cut out entirely go
                moved = []
                for sp in values[c][i] or []:
                    a, b = int(sp[0]), int(sp[1])
                    na, nb = remap(a, False), remap(b, True)
                    if nb > na or b == a:  # an empty span (a marker) moves; one that was all cut out goes
                        moved.append([float(na), float(nb), *sp[2:]])
                values[c][i] = moved
            record = json.loads(records[i]) if records[i] else {}
            mine = record.setdefault(self.step_name, {})
            markers: dict[str, list[list[float]]] = {c: [] for c in actions}
            for s, e, rule, repl in applied:
                at = remap(s, False)
                markers[rule].append([float(at), float(at + len(repl)), 1.0])
                r = mine.setdefault(rule, {"spans": 0, "chars": 0, "removed": []})
                r["spans"] += 1
                r["chars"] += e - s
                if len(r["removed"]) < p.keep_pieces:
                    r["removed"].append([at, text[s:e][:p.keep_chars]])
            for c in actions:
                if values[c][i]:
                    values[c][i] = markers[c]
            records[i] = json.dumps(record, ensure_ascii=False, sort_keys=True)
        table = set_column(table, "text", pa.array(texts, pa.string()))
        for c in cols:
            table = set_column(table, c, pa.array(values[c], schema.SPANS))
        table = set_column(table, schema.EDITS, pa.array(records, pa.string()))
        return mark(table, emptied, schema.DROP, "empty_after_edit")
