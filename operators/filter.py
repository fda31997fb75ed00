"""filter: the deciding step. Applies rules over attributes and drops documents with the rule's reason.

Scores are computed by earlier steps and never recomputed here, so changing a threshold means editing one line
of pipeline.yaml (dolma's tagger/mixer split). Rules run in order; a document is dropped by the first rule it
fails, and that rule's ``reason`` is what the stats count.

    - name: filter
      rules:
        - {reason: not_english, keep: "langid__fasttext__en >= 0.65"}
        - {reason: too_short, drop: "quality_signals__heuristics__word_count < 50"}

Thresholds per language, as FineWeb-2 sets them (one set of rules, numbers that depend on the document's language,
``metadata.language`` as `langid` sets it): ``values`` names numbers per language, ``default`` for every other,
and the rules use the names:

    - name: filter
      values:
        default: {min_stop_words: 2, max_dup_lines: 0.3}
        de: {min_stop_words: 3}
        ja: {max_dup_lines: 0.4}
      rules:
        - {reason: gopher_stop_words, keep: "gopher__quality__stop_words >= min_stop_words"}
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate import expr, schema
from curate.operator import BatchOperator, Params, Reason, mark


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Reason = Field(description="Drop reason counted in stats (letters, digits, underscore).")
    keep: str | None = Field(None, description="Keep documents for which this is true (null: not kept).")
    drop: str | None = Field(None, description="Drop documents for which this is true (null: kept).")

    @model_validator(mode="after")
    def _one_of(self) -> "Rule":
        if (self.keep is None) == (self.drop is None):
            raise ValueError("give exactly one of `keep` or `drop`")
        expr.compile_expr(self.keep or self.drop or "")  # syntax check; names are checked against steps later
        return self


_VALUE_NAME = re.compile(r"[a-z][a-z0-9_]*")


class FilterParams(Params):
    rules: list[Rule] = Field(description="Ordered rules; the first rule a document fails names the reason.")
    values: dict[str, dict[str, float]] = Field(
        {}, description="Numbers the rules name, per document language (metadata.language): {default: {name: "
        "number}, <lang>: {name: number}}; a language takes default's numbers for names it does not set.")

    @model_validator(mode="after")
    def _values(self) -> "FilterParams":
        if not self.values:
            return self
        if "default" not in self.values:
            raise ValueError("values: give a `default` entry with every name the rules use")
        names = set(self.values["default"])
        for lang, vals in self.values.items():
            if lang != "default" and not re.fullmatch(r"[a-z]{2,3}", lang):
                raise ValueError(f"values: {lang!r} is not a language code (2-3 lower-case letters) or `default`")
            unknown = set(vals) - names
            if unknown:
                raise ValueError(f"values.{lang}: {sorted(unknown)} not in values.default")
        bad = [n for n in names if not _VALUE_NAME.fullmatch(n) or "__" in n or n == "chars"]
        if bad:
            raise ValueError(f"values: {bad}: names are lower-case words (no `__`: attributes have those)")
        return self


class Filter(BatchOperator):
    """Drops documents by ordered rules over attributes, each with a named reason."""

    name = "filter"
    Params = FilterParams

    @classmethod
    def check(cls, params: Params, available: dict[str, pa.DataType]) -> None:
        names = {n: pa.float64() for n in params.values.get("default", {})}  # type: ignore[attr-defined]
        for i, rule in enumerate(params.rules):  # type: ignore[attr-defined]
            try:
                expr.compile_expr(rule.keep or rule.drop, {**available, **names})
            except expr.ExprError as e:
                raise ValueError(f"rules[{i}]: {e}") from None

    def setup(self) -> None:
        self.compiled = [(r.reason, expr.compile_expr(r.keep or r.drop), r.keep is not None)
                         for r in self.params.rules]

    def with_values(self, table: pa.Table) -> pa.Table:
        """``table`` with a column per named value, each row's number for its language (evaluation only)."""
        values = self.params.values
        langs = []
        for meta in table.column("metadata").to_pylist():
            try:
                lang = json.loads(meta).get("language") if meta else None
            except (ValueError, AttributeError):
                lang = None
            langs.append(lang if isinstance(lang, str) else None)
        for name, default in values["default"].items():
            col = [values.get(lang, {}).get(name, default) if lang else default for lang in langs]
            table = table.append_column(name, pa.array(col, pa.float64()))
        return table

    def process(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        reasons: list[str | None] = [None] * n
        pending = np.ones(n, dtype=bool)
        scope = self.with_values(table) if self.params.values else table
        for reason, fn, is_keep in self.compiled:
            ok = expr.evaluate(fn, scope).to_numpy(zero_copy_only=False)
            # a null result is False: for `keep` that drops, for `drop` that keeps
            fails = ~ok if is_keep else ok
            hit = fails & pending
            for i in np.flatnonzero(hit):
                reasons[i] = reason
            pending &= ~hit
        return mark(table, ~pending, schema.DROP, reasons)
