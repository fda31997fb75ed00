"""Shared machinery of the dedup operators: node ids, representatives, and applying decisions to documents.

Why this shape: dedup must see the whole corpus, but the document text must never travel through a shuffle.
So the corpus is materialised once (Ray's object store, spilling to disk), only small per-document keys
(hashes, signatures) are shuffled, and the decisions come back to the documents *by input file*: decisions are
written to ``<scratch>/<file index>/`` and each block reads only the files it holds. No join moves text, and no
process holds all decisions.

A node id is ``file_index << 32 | ordinal``: unique, stable across runs and partitionings, and computable from
a row alone. External nodes (band hashes of an earlier run, for incremental dedup) get negative ids.
"""

from __future__ import annotations

import json
import os
import unicodedata
import uuid
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import schema
from curate.operator import set_column

NODE_SHIFT = 32
DECISION_SCHEMA = pa.schema([("node", pa.int64()), ("cluster", pa.string()), ("cluster_size", pa.int64()),
                             ("is_rep", pa.bool_())])


@lru_cache(maxsize=1)
def _punct_table() -> dict[int, None]:
    import sys

    return {c: None for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("P")}


def normalize(text: str) -> str:
    """NFKC, casefold (Unicode lowercase: ß and SS agree), punctuation removed, whitespace collapsed."""
    # NFKC again after casefold: case mappings can decompose (U+01F0 upper-cases to J + combining caron)
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()).translate(_punct_table())
    return " ".join(text.split())


def node_ids(table: pa.Table, file_index: dict[str, int]) -> np.ndarray:
    files = table.column(schema.FILE).to_pylist()
    idx = np.fromiter((file_index[f] for f in files), dtype=np.int64, count=len(files))
    return (idx << NODE_SHIFT) | table.column(schema.ORD).to_numpy().astype(np.int64)


def live_mask(table: pa.Table) -> np.ndarray:
    return pc.is_null(table.column(schema.FATE)).to_numpy(zero_copy_only=False)


def rank_value(table: pa.Table, attribute: str | None) -> np.ndarray:
    """Higher is preferred as representative; nulls rank lowest. Without an attribute every row ranks equal."""
    if attribute is None:
        return np.zeros(table.num_rows)
    col = table.column(attribute).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.where(np.isnan(col), -np.inf, col)


def choose_representatives(members, info, partitions: int):
    """members (node, root) for every node of every non-trivial cluster, roots included, joined with
    info (node, id, rank): per cluster the node with the highest rank, then the smallest id, then the smallest
    node is the representative. External nodes (negative) always win: they were kept by an earlier run.
    Returns Dataset (node, cluster, cluster_size, is_rep), with `cluster` = the representative's id."""
    joined = members.join(info, join_type="inner", num_partitions=partitions, on=("node",))
    return joined.repartition(partitions, keys=["root"]).map_batches(
        pick_representatives, batch_format="pyarrow", batch_size=None)


def pick_representatives(block: pa.Table) -> pa.Table:
    if block.num_rows == 0:
        return DECISION_SCHEMA.empty_table()
    # a root's (root, root) row can come from several blocks: keep one row per node
    _, first = np.unique(block.column("node").to_numpy(), return_index=True)
    block = block.take(np.sort(first))
    root = block.column("root").to_numpy()
    node = block.column("node").to_numpy()
    rank = block.column("rank").to_numpy()
    ids = np.array(block.column("id").to_pylist(), dtype=object)
    external = (node < 0).astype(np.int8)
    # lexsort: last key is primary. Within a root: external first, then highest rank, smallest id, smallest node.
    order = np.lexsort((node, ids.astype(str), -rank, -external, root))
    root, node, ids = root[order], node[order], ids[order]
    starts = np.flatnonzero(np.r_[True, root[1:] != root[:-1]])
    counts = np.diff(np.r_[starts, len(root)])
    rep_ids = np.repeat(ids[starts], counts)
    is_rep = np.zeros(len(root), dtype=bool)
    is_rep[starts] = True
    n_external = np.add.reduceat(external[order], starts) if len(starts) else np.array([], dtype=np.int64)
    sizes = np.repeat(counts - n_external, counts)  # clusters are sized in this run's documents
    keep = node >= 0
    return pa.table({"node": pa.array(node[keep], pa.int64()), "cluster": pa.array(rep_ids[keep].tolist(), pa.string()),
                     "cluster_size": pa.array(sizes[keep], pa.int64()), "is_rep": pa.array(is_rep[keep])})


def write_decisions(decisions, scratch: str) -> None:
    """Decisions partitioned by input file under ``scratch/<file index>/``, for `DecisionApplier`."""
    def write(block: pa.Table) -> pa.Table:
        if block.num_rows == 0:
            return pa.table({"n": [0]})
        fidx = block.column("node").to_numpy() >> NODE_SHIFT
        for f in np.unique(fidx):
            part = block.filter(pa.array(fidx == f))
            d = os.path.join(scratch, str(int(f)))
            os.makedirs(d, exist_ok=True)
            pq.write_table(part, os.path.join(d, f"{uuid.uuid4().hex}.parquet"))
        return pa.table({"n": [block.num_rows]})

    decisions.map_batches(write, batch_format="pyarrow", batch_size=None).materialize()


class DecisionApplier:
    """Per block: read the decisions of the block's files, and write the cluster attributes of live rows."""

    def __init__(self, scratch: str, prefix: str, file_index: dict[str, int]):
        self.scratch, self.prefix, self.file_index = scratch, prefix, file_index

    def _load(self, fidx: int) -> dict[int, tuple[str, int, bool]]:
        d = os.path.join(self.scratch, str(fidx))
        if not os.path.isdir(d):
            return {}
        t = pq.read_table(d)
        return {n: (c, s, r) for n, c, s, r in zip(t.column("node").to_pylist(), t.column("cluster").to_pylist(),
                                                   t.column("cluster_size").to_pylist(),
                                                   t.column("is_rep").to_pylist())}

    def __call__(self, table: pa.Table) -> pa.Table:
        nodes = node_ids(table, self.file_index)
        live = live_mask(table)
        decided: dict[int, tuple[str, int, bool]] = {}
        for f in np.unique(nodes >> NODE_SHIFT):
            decided.update(self._load(int(f)))
        ids = table.column("id").to_pylist()
        cluster, size, rep = [], [], []
        for n, i, alive in zip(nodes.tolist(), ids, live.tolist()):
            if not alive:
                cluster.append(None), size.append(None), rep.append(None)
            elif n in decided:
                c, s, r = decided[n]
                cluster.append(c), size.append(s), rep.append(r)
            else:
                cluster.append(i), size.append(1), rep.append(True)
        table = set_column(table, f"{self.prefix}__cluster", pa.array(cluster, pa.string()))
        table = set_column(table, f"{self.prefix}__cluster_size", pa.array(size, pa.int64()))
        return set_column(table, f"{self.prefix}__is_rep", pa.array(rep, pa.bool_()))


def cluster_histogram(decisions) -> dict[str, Any]:
    """Clusters by size (sizes of non-trivial clusters) and documents marked duplicate."""
    reps = decisions.filter(lambda r: bool(r["is_rep"])).select_columns(["cluster_size"]).take_all()
    sizes = np.array([r["cluster_size"] for r in reps], dtype=np.int64)
    hist: dict[str, int] = {}
    for s in sizes.tolist():
        key = str(s) if s < 10 else ("10-99" if s < 100 else "100+")
        hist[key] = hist.get(key, 0) + 1
    n_decided = decisions.count()
    return {"clusters": int(len(sizes)), "clusters_by_size": dict(sorted(hist.items())),
            "duplicates": int(n_decided - len(sizes))}


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
