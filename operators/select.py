"""select: keep the best documents by a score attribute - the top ``fraction`` BY CHARACTERS, or a fixed threshold.

PreSelect (and DCLM/FineWeb-Edu style selection) keeps "the top 10%": the threshold is the score at which the
best documents, taken best first, cover ``fraction`` of all characters of the live documents. That needs the
whole dataset, so this is a whole-dataset step, distributed in three light passes over two columns (never the
text): the score range; a per-block character histogram over 65,536 score bins, summed on the driver to find the
bin where the cumulative characters cross the target; the exact (score, characters) pairs of that one bin,
sorted, to place the threshold exactly. Documents with ``score >= threshold`` are kept (ties at the threshold
all stay, so the kept share can exceed ``fraction`` by the tied documents); the rest, and documents without a
score, are dropped with ``reason``. The threshold and the kept share are recorded in stats.json
(``steps.<name>.info``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate import schema
from curate.operator import DatasetOperator, Params, Reason, RunContext, arrow_blocks, fits_one_task, mark

BINS = 1 << 16


class SelectParams(Params):
    attribute: str = Field("preselect__fasttext__score", description="Score attribute (higher is better).")
    fraction: float | None = Field(None, gt=0, le=1, description="Keep the best documents covering this share "
                                   "of all characters (PreSelect: 0.1).")
    threshold: float | None = Field(None, description="Or: keep documents with score >= threshold.")
    reason: Reason = Field("preselect_below_threshold", description="Drop reason counted in stats.")

    @model_validator(mode="after")
    def _one(self) -> "SelectParams":
        if (self.fraction is None) == (self.threshold is None):
            raise ValueError("give exactly one of `fraction` or `threshold`")
        return self


def _scores_chars(table: pa.Table, attribute: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores (NaN when null) and characters of the live rows."""
    live = table.filter(pa.array(schema.live_mask(table)))
    s = live.column(attribute).cast(pa.float64()).to_numpy(zero_copy_only=False)
    c = pc.fill_null(pc.utf8_length(live.column("text")), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.asarray(s, dtype=np.float64), c


def _bin(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(len(s), dtype=np.int64)
    return np.clip(((s - lo) / (hi - lo) * BINS).astype(np.int64), 0, BINS - 1)


def threshold_for(pairs_by_bin, hist: np.ndarray, target: float) -> tuple[float, int]:
    """(threshold, kept characters): the score at which the best documents first cover ``target`` characters.

    ``hist`` holds characters per score bin; ``pairs_by_bin(b)`` returns the (scores, chars) of bin ``b``."""
    above = 0
    for b in range(BINS - 1, -1, -1):
        if hist[b] and above + hist[b] >= target:
            s, c = pairs_by_bin(b)
            order = np.argsort(-s, kind="stable")  # best first
            s, c = s[order], c[order]
            k = int(np.searchsorted(above + np.cumsum(c), target, side="left"))
            t = float(s[min(k, len(s) - 1)])
            return t, above + int(c[s >= t].sum())
        above += int(hist[b])
    return -math.inf, above


class Select(DatasetOperator):
    """Keep the top fraction of documents by characters (or a fixed threshold) by a score attribute."""

    name = "select"
    Params = SelectParams
    marks_rows = True
    attribute_params = ("attribute",)

    def apply(self, ds, ctx: RunContext):
        p: SelectParams = self.params  # type: ignore[assignment]
        ds, timer = self.materialize(ds, ctx)
        attr = p.attribute
        if p.threshold is not None:
            t, info = p.threshold, {"threshold": p.threshold}
        else:  # a checkpointed stage: a resume after it does not pass over the corpus again
            t, info = self.stage(ctx, "threshold", lambda: self._threshold(ds, p, timer))
        timer.info(info)

        def apply_block(table: pa.Table) -> pa.Table:
            if table.num_rows == 0:
                return table
            s = table.column(attr).cast(pa.float64()).to_numpy(zero_copy_only=False)
            s = np.asarray(s, dtype=np.float64)
            live = schema.live_mask(table)
            below = live & ~(s >= t)  # NaN (no score) is below
            return mark(table, below, schema.DROP, p.reason)

        return ds.map_batches(apply_block, batch_format="pyarrow", batch_size=None)

    def _threshold(self, ds, p: SelectParams, timer) -> tuple[float, dict]:
        import ray

        if fits_one_task(ds):  # small input: the same passes in one task, not three Ray Data executions
            t, info = ray.get(ray.remote(num_cpus=1)(_threshold_local).remote(p, *arrow_blocks(ds)))
        else:
            def each(fn: Callable[[pa.Table], pa.Table]) -> list[pa.Table]:
                return [pa.Table.from_batches([x]) if isinstance(x, pa.RecordBatch) else x
                        for x in ds.map_batches(fn, batch_format="pyarrow", batch_size=None)
                        .iter_batches(batch_format="pyarrow", batch_size=None)]
            t, info = threshold_passes(each, p)
        timer.done("threshold", info["total_chars"])
        return t, info


def _threshold_local(p: SelectParams, *tables: pa.Table) -> tuple[float, dict]:
    return threshold_passes(lambda fn: [fn(t) for t in tables], p)


def threshold_passes(each: Callable[[Callable[[pa.Table], pa.Table]], list[pa.Table]],
                     p: SelectParams) -> tuple[float, dict]:
    """The exact top-fraction threshold in three passes over the blocks (score range, a character histogram over
    BINS bins, the scores of the one bin the threshold falls in); ``each(fn)`` runs ``fn`` over every block and
    returns the results. The same passes whether the blocks are a distributed Dataset or one task's tables."""
    attr = p.attribute

    def rng(table: pa.Table) -> pa.Table:
        s, _ = _scores_chars(table, attr)
        s = s[~np.isnan(s)]
        lo, hi = (float(s.min()), float(s.max())) if len(s) else (math.inf, -math.inf)
        return pa.table({"lo": [lo], "hi": [hi]})

    ranges = each(rng)
    lo = min((float(pc.min(r.column("lo")).as_py()) for r in ranges if r.num_rows), default=math.inf)
    hi = max((float(pc.max(r.column("hi")).as_py()) for r in ranges if r.num_rows), default=-math.inf)
    if not math.isfinite(lo):  # no scored live document (or no rows at all)
        return math.inf, {"threshold": None, "fraction": p.fraction, "kept_chars": 0, "total_chars": 0}

    def hist(table: pa.Table) -> pa.Table:
        s, c = _scores_chars(table, attr)
        ok = ~np.isnan(s)
        h = np.bincount(_bin(s[ok], lo, hi), weights=c[ok], minlength=BINS).astype(np.int64)
        return pa.table({"h": [h.tobytes()], "unscored": [int(c[~ok].sum())]})

    h = np.zeros(BINS, dtype=np.int64)
    unscored = 0
    for part in each(hist):
        for raw, u in zip(part.column("h").to_pylist(), part.column("unscored").to_pylist()):
            h += np.frombuffer(raw, dtype=np.int64)
            unscored += u

    def pairs_by_bin(b: int) -> tuple[np.ndarray, np.ndarray]:
        def pick(table: pa.Table) -> pa.Table:
            s, c = _scores_chars(table, attr)
            m = ~np.isnan(s)
            m[m] = _bin(s[m], lo, hi) == b
            return pa.table({"s": pa.array(s[m], pa.float64()), "c": pa.array(c[m], pa.int64())})
        parts = each(pick)
        t = pa.concat_tables(parts) if parts else pa.table({"s": pa.array([], pa.float64()),
                                                            "c": pa.array([], pa.int64())})
        return t.column("s").to_numpy(), t.column("c").to_numpy()

    total = int(h.sum()) + unscored  # unscored documents count in the total and are dropped
    t, kept = threshold_for(pairs_by_bin, h, p.fraction * total)  # type: ignore[operator]
    return t, {"threshold": t, "fraction": p.fraction, "kept_chars": kept, "total_chars": total,
               "kept_share": round(kept / total, 6) if total else 0.0}
