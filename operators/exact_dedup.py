"""exact_dedup: documents whose normalised text (optionally with their URL) is identical, across the corpus.

The key is a 64-bit BLAKE2b of the normalised text (NFKC, lowercase, punctuation removed, whitespace collapsed;
the same normalisation as minhash_dedup), or of the URL, or both. Keys are hash-shuffled so each group lands in
one block; per group the representative is the document with the highest ``keep_highest`` attribute, else the
smallest id. Only groups with more than one member produce decisions, so the decision table is as small as the
duplication. Results are attributes ``exact_dedup__cluster``, ``__cluster_size``, ``__is_rep``; the ``filter``
step drops with ``keep: "exact_dedup__is_rep"`` and a reason such as ``exact_duplicate``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from curate import dedup
from curate.operator import DatasetOperator, Params, RunContext, register


class ExactDedupParams(Params):
    key: Literal["text", "url", "text+url"] = Field("text", description="What must be identical.")
    keep_highest: str | None = Field(None, description="Representative = highest value of this attribute "
                                     "(ties: smallest id); default: smallest id.")
    partitions: int = Field(8, ge=1, description="Partitions of the shuffle.")


def key_of(text: str | None, meta: str | None, key: str) -> int:
    parts = []
    if "text" in key:
        parts.append(dedup.normalize(text or ""))
    if "url" in key:
        url = (json.loads(meta).get("url") if meta else None) or ""
        parts.append(url)
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@register
class ExactDedup(DatasetOperator):
    """Exact duplicates of normalised text (or URL) across the whole dataset."""

    name = "exact_dedup"
    Params = ExactDedupParams
    outputs = {"exact_dedup__cluster": pa.string(), "exact_dedup__cluster_size": pa.int64(),
               "exact_dedup__is_rep": pa.bool_()}

    @classmethod
    def check(cls, params: Params, available: dict[str, pa.DataType]) -> None:
        attr = params.keep_highest  # type: ignore[attr-defined]
        if attr is not None and attr not in available:
            raise ValueError(f"keep_highest: {attr!r} is made by no earlier step")

    def apply(self, ds, ctx: RunContext):
        import ray

        p: ExactDedupParams = self.params  # type: ignore[assignment]
        t0 = time.perf_counter()
        ds = ds.materialize()
        file_index = ctx.file_index

        def keys(table: pa.Table) -> pa.Table:
            sub = table.filter(pa.array(dedup.live_mask(table)))
            k = [key_of(t, m, p.key) for t, m in zip(sub.column("text").to_pylist(),
                                                    sub.column("metadata").to_pylist())]
            return pa.table({"root": pa.array(k, pa.int64()), "node": pa.array(dedup.node_ids(sub, file_index)),
                             "id": sub.column("id"), "rank": pa.array(dedup.rank_value(sub, p.keep_highest))})

        decisions = (ds.map_batches(keys, batch_format="pyarrow", batch_size=None)
                     .repartition(p.partitions, keys=["root"])
                     .map_batches(_groups, batch_format="pyarrow", batch_size=None)
                     .materialize())
        scratch = os.path.join(ctx.out_dir, "_work", self.step_name)
        dedup.write_decisions(decisions, scratch)
        if ctx.stats_actor is not None:
            ray.get(ctx.stats_actor.add_time.remote(f"{self.step_name}:hash_group_decide", time.perf_counter() - t0,
                                                    decisions.count()))
            ray.get(ctx.stats_actor.set_info.remote(self.step_name, dedup.cluster_histogram(decisions)))
        return ds.map_batches(dedup.DecisionApplier(scratch, self.name, file_index), batch_format="pyarrow",
                              batch_size=None, zero_copy_batch=True)


def _groups(block: pa.Table) -> pa.Table:
    """Representatives of the groups in this block; groups of one make no decision."""
    if block.num_rows == 0:
        return dedup.DECISION_SCHEMA.empty_table()
    root = block.column("root").to_numpy()
    uniq, counts = np.unique(root, return_counts=True)
    multi = np.isin(root, uniq[counts > 1])
    return dedup.pick_representatives(block.filter(pa.array(multi)))
