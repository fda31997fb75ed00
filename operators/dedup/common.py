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

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from curate import checkpoint, failpoints
from curate.operator import DatasetOperator, RunContext, arrow_blocks, fits_one_task, set_column
from curate.schema import NODE_SHIFT, STAT_PREFIX, live_mask, node_ids

DECISION_SCHEMA = pa.schema([("node", pa.int64()), ("cluster", pa.string()), ("cluster_size", pa.int64()),
                             ("is_rep", pa.bool_())])


_NON_WORD = re.compile(r"[^\w\s]+")


def normalize(text: str) -> str:
    """NFKC, casefold (Unicode lowercase: ß and SS agree), punctuation and symbols removed, whitespace collapsed.

    NFKC runs only on non-ASCII text (it is the identity on ASCII), and again after casefold, because case
    mappings can decompose (U+01F0 upper-cases to J + combining caron).
    """
    return " ".join(_NON_WORD.sub("", fold(text)).split())


def fold(text: str) -> str:
    """normalize() up to the punctuation and whitespace steps: NFKC and casefold (shared with minhash's block path)."""
    if text.isascii():
        return text.lower()
    text = nfkc(text).casefold()
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


# NFKC maps no code point at or above this on its own (checked for every code point: tests/test_dedup.py)
_NFKC_LIMIT = 0x30000


@lru_cache(maxsize=1)
def _nfkc_images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each code point's own NFKC image (below _NFKC_LIMIT): start and length in one flat array of code points.
    ~0.04 s, once per process, and only once some text needs it."""
    images = [chr(c) if 0xD800 <= c < 0xE000 else unicodedata.normalize("NFKC", chr(c)) for c in range(_NFKC_LIMIT)]
    lengths = np.fromiter(map(len, images), dtype=np.int64, count=_NFKC_LIMIT)
    flat = np.frombuffer("".join(images).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return np.r_[0, np.cumsum(lengths)[:-1]], lengths, flat


def nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), ~5x faster on the usual non-normalised web text, whose only
    non-normalised characters are ones NFKC maps on their own (full-width punctuation in CJK text, ellipses,
    ligatures). Every character is first replaced by its own NFKC image, which leaves the NFKC of the whole
    unchanged (NFKD of an image is NFKD of its character); if that is already normalised it is the answer,
    otherwise (composition across characters) it is normalised in full. Exact either way (tested)."""
    if unicodedata.is_normalized("NFKC", text):  # a fast quick-check; most web text is already NFKC
        return text
    starts, lengths, flat = _nfkc_images()
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    big = cps >= _NFKC_LIMIT
    idx = np.where(big, 0, cps)
    n = np.where(big, 1, lengths[idx])
    if (n == 1).all():
        out = np.where(big, cps, flat[starts[idx]])
    else:
        src = np.repeat(np.arange(len(cps)), n)  # output position -> input character
        within = np.arange(len(src)) - np.repeat(np.cumsum(n) - n, n)
        out = np.where(big[src], cps[src], flat[starts[idx][src] + within])
    mapped = out.astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    return mapped if unicodedata.is_normalized("NFKC", mapped) else unicodedata.normalize("NFKC", mapped)


def rank_value(table: pa.Table, attribute: str | None) -> np.ndarray:
    """Higher is preferred as representative; nulls rank lowest. Without an attribute every row ranks equal."""
    if attribute is None:
        return np.zeros(table.num_rows)
    col = table.column(attribute).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.where(np.isnan(col), -np.inf, col)


def shuffle_map(ds, keys: list[str], partitions: int, fn: Callable[[pa.Table], pa.Table]):
    """``fn`` over blocks that each hold every row of their key (one int64 column): a hash shuffle into
    ``partitions`` blocks, or, when the (materialised) input is at most ONE_TASK_BYTES, one task over all of it.
    ``fn`` must treat a block as a set of whole key groups, which both paths give it, so both give the same rows
    (tested)."""
    import ray
    import ray.data

    ds = ds.materialize()
    if ds.count() == 0:  # nothing to bring together (blocks may even lack columns): as Ray Data maps empty input
        return ds.map_batches(fn, batch_format="pyarrow", batch_size=None)
    if not fits_one_task(ds):
        return task_shuffle(ds, keys, partitions, fn)
    return ray.data.from_arrow_refs([ray.remote(num_cpus=1)(_concat_map).remote(fn, *arrow_blocks(ds))])


def task_shuffle(ds, keys: list[str], partitions: int, fn: Callable[[pa.Table], pa.Table]):
    """A hash shuffle in plain Ray tasks: one task per block splits it by key hash into ``partitions`` tables (one
    object each), then one task per partition concatenates its pieces and runs ``fn``. Ray Data's
    ``repartition(keys=...)`` did the same with a fixed cost of seconds per shuffle (its aggregator actors): at
    300k documents the band-bucket shuffle alone took 22.8 s for 67 MB of (key, node) rows. Here the cost is the
    bytes moved plus two rounds of task launches. Deterministic: pieces keep block order."""
    import ray
    import ray.data

    (key,) = keys
    partitions = shuffle_partitions(ds.size_bytes(), partitions)
    split = ray.remote(num_cpus=1, num_returns=partitions)(_split_by_hash)
    pieces = [split.remote(ref, key, partitions) for ref in arrow_blocks(ds)]
    if partitions == 1:
        pieces = [[p] for p in pieces]
    reduce = ray.remote(num_cpus=1)(_concat_map)
    return ray.data.from_arrow_refs([reduce.remote(fn, *(p[i] for p in pieces)) for i in range(partitions)])


# Bytes a shuffle's reduce task holds at most (roughly): a larger input gets more partitions than asked, so the
# memory of a task follows the partition, not the corpus (band rows of 100M documents are ~22 GB).
PARTITION_BYTES = 256 << 20


def shuffle_partitions(size_bytes: int, asked: int) -> int:
    """Partitions of a shuffle: as asked (the step's ``partitions``), or more, one per PARTITION_BYTES of input."""
    return max(asked, -(-size_bytes // PARTITION_BYTES))


def _split_by_hash(table: pa.Table, key: str, partitions: int) -> tuple[pa.Table, ...] | pa.Table:
    """A block's rows by partition of their key (a multiplicative hash of the int64 value, top bits)."""
    failpoints.hit("shuffle:split")  # tests: a node lost inside the shuffle
    with np.errstate(over="ignore"):
        h = table.column(key).to_numpy().astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    part = ((h >> np.uint64(32)) % np.uint64(partitions)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    # a fresh table per piece (not slices of one): a slice would carry its parent's whole buffers into the store
    out = tuple(table.take(pa.array(order[bounds[i]:bounds[i + 1]])) for i in range(partitions))
    return out if partitions > 1 else out[0]


def _concat_map(fn: Callable[[pa.Table], pa.Table], *tables: pa.Table) -> pa.Table:
    """One task's shuffle: every block concatenated (empty ones only for their schema), then ``fn``."""
    tables = [t for t in tables if t.num_rows] or list(tables[:1])
    return fn(pa.concat_tables(tables, promote_options="default"))


def hash_join(left, right, on: str, how: str, partitions: int, left_types: dict[str, pa.DataType],
              right_types: dict[str, pa.DataType]):
    """Join two Ray Datasets on an int64 key whose values are unique on the right (node ids): both sides are
    widened to one schema, tagged, unioned and hash-shuffled by the key, so matching rows share a block; each
    block is then joined with numpy searchsorted. One plain shuffle; any column types (signatures are lists).
    ``how``: "inner" (left columns + right payload) or "left_anti" (left rows without a match)."""
    cols = {on: pa.int64(), **{c: t for c, t in left_types.items() if c != on},
            **{c: t for c, t in right_types.items() if c != on}}
    schema = pa.schema([*cols.items(), ("_side", pa.int8())])
    lcols, rcols = list(left_types), [c for c in right_types if c != on]

    def widen(side: int):
        def f(block: pa.Table) -> pa.Table:
            n = block.num_rows
            arrays = [block.column(c) if c in block.column_names else pa.nulls(n, t) for c, t in cols.items()]
            return pa.Table.from_arrays([*arrays, pa.array(np.full(n, side, np.int8))], schema=schema)
        return f

    def join(block: pa.Table) -> pa.Table:
        side = block.column("_side").to_numpy()
        lt = block.filter(pa.array(side == 0))
        rt = block.filter(pa.array(side == 1))
        rkeys = rt.column(on).to_numpy()
        order = np.argsort(rkeys, kind="stable")
        rkeys = rkeys[order]
        lkeys = lt.column(on).to_numpy()
        pos = np.searchsorted(rkeys, lkeys)
        pos_c = np.minimum(pos, max(len(rkeys) - 1, 0))
        hit = (pos < len(rkeys)) & (rkeys[pos_c] == lkeys) if len(rkeys) else np.zeros(len(lkeys), bool)
        if how == "left_anti":
            return lt.filter(pa.array(~hit)).select(lcols)
        out = lt.filter(pa.array(hit)).select(lcols)
        matched = rt.take(order[pos_c[hit]])
        for c in rcols:
            out = out.append_column(c, matched.column(c))
        return out

    both = left.map_batches(widen(0), batch_format="pyarrow", batch_size=None).union(
        right.map_batches(widen(1), batch_format="pyarrow", batch_size=None))
    return shuffle_map(both, [on], partitions, join)


INFO_TYPES = {"node": pa.int64(), "id": pa.string(), "rank": pa.float64()}


def choose_representatives(members, info, partitions: int):
    """members (node, root) for every node of every non-trivial cluster, roots included, joined with
    info (node, id, rank): per cluster the node with the highest rank, then the smallest id, then the smallest
    node is the representative. External nodes (negative) always win: they were kept by an earlier run.
    Returns Dataset (node, cluster, cluster_size, is_rep), with `cluster` = the representative's id."""
    joined = hash_join(members, info, "node", "inner", partitions, {"node": pa.int64(), "root": pa.int64()},
                       INFO_TYPES)
    return shuffle_map(joined, ["root"], partitions, pick_representatives)


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


def write_by_file(block: pa.Table, scratch: str) -> None:
    """Rows keyed by node, written under ``scratch/<file index>/`` (read back with `load_decisions`); scratch may be
    an object-store URL (a cluster has no shared disk). A file's name is a function of its rows, so a retried task
    replaces its own file instead of adding a second copy."""
    if block.num_rows == 0:
        return
    fidx = block.column("node").to_numpy() >> NODE_SHIFT
    for f in np.unique(fidx):
        part = block.filter(pa.array(fidx == f))
        checkpoint.write_table(f"{scratch}/{int(f)}/{checkpoint.block_name(part)}.parquet", part)


def write_decisions(decisions, scratch: str) -> None:
    """Decisions partitioned by input file under ``scratch/<file index>/``, for `DecisionApplier`."""
    def write(block: pa.Table) -> pa.Table:
        write_by_file(block, scratch)
        return pa.table({"n": [block.num_rows]})

    decisions.map_batches(write, batch_format="pyarrow", batch_size=None).materialize()


def load_decisions(scratch: str, nodes: np.ndarray) -> pa.Table | None:
    """The decisions written by `write_decisions` for the input files these nodes come from (None if none)."""
    parts = []
    for f in np.unique(nodes >> NODE_SHIFT):
        folder = f"{scratch}/{int(f)}"
        parts += [checkpoint.read_table(f"{folder}/{rel}") for rel in checkpoint.files_under(folder, ".parquet")]
    return pa.concat_tables(parts) if parts else None


class DecisionApplier:
    """Per block: read the decisions of the block's files, and write the cluster attributes of live rows:
    ``<name>__<tagger>__duplicate`` (1.0 on duplicates, 0.0 on representatives and singletons: a Dolma-style numeric
    flag, as `dolma dedupe` marks duplicates), ``<name>__<tagger>__cluster_size``, and the cluster id (the
    representative's document id), which is no score, as the stats-only column ``_stat_<name>__cluster``."""

    def __init__(self, scratch: str, name: str, tagger: str, file_index: dict[str, int]):
        self.scratch, self.name, self.tagger, self.file_index = scratch, name, tagger, file_index

    def __call__(self, table: pa.Table) -> pa.Table:
        nodes = node_ids(table, self.file_index)
        live = live_mask(table)
        decided: dict[int, tuple[str, int, bool]] = {}
        t = load_decisions(self.scratch, nodes)
        if t is not None:
            decided = {n: (c, s, r) for n, c, s, r in zip(t.column("node").to_pylist(), t.column("cluster").to_pylist(),
                                                         t.column("cluster_size").to_pylist(),
                                                         t.column("is_rep").to_pylist())}
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
        prefix = f"{self.name}__{self.tagger}"
        table = set_column(table, f"{STAT_PREFIX}{self.name}__cluster", pa.array(cluster, pa.string()))
        table = set_column(table, f"{prefix}__cluster_size", pa.array(size, pa.int64()))
        dup = [None if r is None else (0.0 if r else 1.0) for r in rep]
        return set_column(table, f"{prefix}__duplicate", pa.array(dup, pa.float64()))


def cluster_histogram(decisions) -> dict[str, Any]:
    """Clusters by size (sizes of non-trivial clusters) and documents marked duplicate."""
    from ray.data.expressions import col

    reps = decisions.filter(expr=col("is_rep")).select_columns(["cluster_size"]).take_all()
    sizes = np.array([r["cluster_size"] for r in reps], dtype=np.int64)
    hist: dict[str, int] = {}
    for s in sizes.tolist():
        key = str(s) if s < 10 else ("10-99" if s < 100 else "100+")
        hist[key] = hist.get(key, 0) + 1
    n_decided = decisions.count()
    return {"clusters": int(len(sizes)), "clusters_by_size": dict(sorted(hist.items())),
            "duplicates": int(n_decided - len(sizes))}


def cluster_outputs(name: str, tagger: str) -> dict[str, pa.DataType]:
    """The columns DecisionApplier writes."""
    return {f"{name}__{tagger}__duplicate": pa.float64(), f"{name}__{tagger}__cluster_size": pa.int64(),
            f"{STAT_PREFIX}{name}__cluster": pa.string()}


class DedupOperator(DatasetOperator):
    """What the dedup operators share: the representative rule, its check, and the way back to the documents."""

    attribute_params = ("keep_highest",)
    tagger: str  # the attribute names' middle part: <name>__<tagger>__duplicate

    def attach(self, ds, decide: Callable[[], Any], ctx: RunContext, timer: Any, info: dict[str, Any] | None = None):
        """Run ``decide()`` (the step's decisions as a Dataset), write them per input file and report the cluster
        histogram, as one checkpointed stage (a resume after it reads the files back); then map the decisions
        onto the documents."""
        scratch = self.stage_dir(ctx, "decisions")

        def run() -> dict[str, Any]:
            decisions = decide()
            write_decisions(decisions, scratch)
            timer.done("write_decisions", decisions.count())
            return {**(info or {}), **cluster_histogram(decisions)}

        timer.info(self.stage(ctx, "decisions", run))
        return ds.map_batches(DecisionApplier(scratch, self.name, self.tagger, ctx.file_index), batch_format="pyarrow",
                              batch_size=None, zero_copy_batch=True)
