"""exact_dedup: documents whose normalised text (optionally with their URL) is identical, across the corpus.

The key is a 64-bit BLAKE2b of the normalised text (NFKC, lowercase, punctuation removed, whitespace collapsed;
the same normalisation as minhash_dedup), or of the URL, or both. Keys are hash-shuffled so each group lands in
one block; per group the representative is the document with the highest ``keep_highest`` attribute, else the
smallest id. Only groups with more than one member produce decisions, so the decision table is as small as the
duplication. Results are attributes ``exact_dedup__exact__duplicate`` (1.0 on duplicates, 0.0 on representatives)
and ``exact_dedup__exact__cluster_size``, and the cluster id in the per-document stats; the ``filter`` step drops
with ``drop: "exact_dedup__exact__duplicate > 0"`` and a reason such as ``exact_duplicate``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from operators.dedup import common as dedup
from curate import schema
from curate.operator import Params, RunContext


class ExactDedupParams(Params):
    key: Literal["text", "url", "text+url"] = Field("text", description="What must be identical.")
    keep_highest: str | None = Field(None, description="Representative = highest value of this attribute "
                                     "(ties: smallest id); default: smallest id.")
    partitions: int = Field(8, ge=1, description="Partitions of the shuffle (at least; one per 256 MiB beyond).")


def key_of(text: str | None, meta: str | None, key: str) -> int:
    parts = []
    if "text" in key:
        # a text that normalises to nothing (only symbols, mojibake) is keyed by its raw form instead, so
        # different garbage is not "identical", while identical garbage still is
        norm = dedup.normalize(text or "")
        parts.append(norm if norm or not text else "\x01raw\x01" + text)
    if "url" in key:
        url = (json.loads(meta).get("url") if meta else None) or ""
        parts.append(url)
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class ExactDedup(dedup.DedupOperator):
    """Exact duplicates of normalised text (or URL) across the whole dataset."""

    name = "exact_dedup"
    Params = ExactDedupParams
    tagger = "exact"
    outputs = dedup.cluster_outputs("exact_dedup", "exact")

    def apply(self, ds, ctx: RunContext):
        p: ExactDedupParams = self.params  # type: ignore[assignment]
        ds, timer = self.materialize(ds, ctx)
        file_index = ctx.file_index

        def keys(table: pa.Table) -> pa.Table:
            sub = table.filter(pa.array(schema.live_mask(table)))
            k = [key_of(t, m, p.key) for t, m in zip(sub.column("text").to_pylist(),
                                                    sub.column("metadata").to_pylist())]
            return pa.table({"root": pa.array(k, pa.int64()), "node": pa.array(schema.node_ids(sub, file_index)),
                             "id": sub.column("id"), "rank": pa.array(dedup.rank_value(sub, p.keep_highest))})

        def decide():
            decisions = dedup.shuffle_map(ds.map_batches(keys, batch_format="pyarrow", batch_size=None), ["root"],
                                          p.partitions, _groups).materialize()
            timer.done("hash_and_group", decisions.count())
            return decisions

        return self.attach(ds, decide, ctx, timer)


def _groups(block: pa.Table) -> pa.Table:
    """Representatives of the groups in this block; groups of one make no decision."""
    if block.num_rows == 0:
        return dedup.DECISION_SCHEMA.empty_table()
    root = block.column("root").to_numpy()
    uniq, counts = np.unique(root, return_counts=True)
    multi = np.isin(root, uniq[counts > 1])
    return dedup.pick_representatives(block.filter(pa.array(multi)))
