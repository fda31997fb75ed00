"""filter: the deciding step. Applies rules over attributes and drops documents with the rule's reason.

Scores are computed by earlier steps and never recomputed here, so changing a threshold means editing one line
of pipeline.yaml (dolma's tagger/mixer split). Rules run in order; a document is dropped by the first rule it
fails, and that rule's ``reason`` is what the stats count.

    - name: filter
      rules:
        - {reason: not_english, keep: "langid__fasttext__en >= 0.65"}
        - {reason: too_short, drop: "quality_signals__heuristics__word_count < 50"}
"""

from __future__ import annotations

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


class FilterParams(Params):
    rules: list[Rule] = Field(description="Ordered rules; the first rule a document fails names the reason.")


class Filter(BatchOperator):
    """Drops documents by ordered rules over attributes, each with a named reason."""

    name = "filter"
    Params = FilterParams

    @classmethod
    def check(cls, params: Params, available: dict[str, pa.DataType]) -> None:
        for i, rule in enumerate(params.rules):  # type: ignore[attr-defined]
            try:
                expr.compile_expr(rule.keep or rule.drop, available)
            except expr.ExprError as e:
                raise ValueError(f"rules[{i}]: {e}") from None

    def setup(self) -> None:
        self.compiled = [(r.reason, expr.compile_expr(r.keep or r.drop), r.keep is not None)
                         for r in self.params.rules]

    def process(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        reasons: list[str | None] = [None] * n
        pending = np.ones(n, dtype=bool)
        for reason, fn, is_keep in self.compiled:
            ok = expr.evaluate(fn, table).to_numpy(zero_copy_only=False)
            # a null result is False: for `keep` that drops, for `drop` that keeps
            fails = ~ok if is_keep else ok
            hit = fails & pending
            for i in np.flatnonzero(hit):
                reasons[i] = reason
            pending &= ~hit
        return mark(table, ~pending, schema.DROP, reasons)
