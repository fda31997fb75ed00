"""Connected components of a large edge list on Ray Data, with no process ever holding all edges.

The algorithm is the alternating Large-Star / Small-Star of Kiveris et al., "Connected Components in MapReduce
and Beyond" (SoCC 2014). Each step is one hash shuffle (``shuffle_map``: every edge of a node in one block; one
task when the edges are small) followed by vectorised numpy work per block, so memory per worker is edges /
partitions and the number of rounds is O(log n) (2-4 on dedup graphs, whose candidate edges already point at a
bucket minimum).

* Large-Star(u): m = min(N(u) ∪ {u}); link every neighbour v > u to m.
* Small-Star(u): over the neighbours v ≤ u, m = min(those ∪ {u}); link each of them and u to m.

At the fixed point each component is a star around its smallest node: the edge (v, root) for every non-root v.
Node ids are int64 and their order is meaningful to callers: the root of a component is its smallest id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate.operator import arrow_blocks, fits_one_task
from operators.dedup.common import shuffle_map

EDGE_SCHEMA = pa.schema([("u", pa.int64()), ("v", pa.int64())])


def _dedupe(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = u != v
    u, v = u[keep], v[keep]
    if not len(u):
        return u, v
    pairs = np.unique(np.stack([u, v], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _table(u: np.ndarray, v: np.ndarray) -> pa.Table:
    return pa.table({"u": pa.array(u, pa.int64()), "v": pa.array(v, pa.int64())})


def _group_min(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by u; return sorted u, v, and per-row the min of v over the row's u-group. (An empty piece is
    common: a partition of the shuffle that got no edge.)"""
    if not len(u):
        return u, v, v.copy()
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    mins = np.minimum.reduceat(v, starts)
    counts = np.diff(np.r_[starts, len(u)])
    return u, v, np.repeat(mins, counts)


def _large_star(block: pa.Table) -> pa.Table:
    u = block.column("u").to_numpy()
    v = block.column("v").to_numpy()
    u, v, m = _group_min(u, v)
    m = np.minimum(m, u)
    sel = v > u
    return _table(*_dedupe(v[sel], m[sel]))


def _small_star(block: pa.Table) -> pa.Table:
    u = block.column("u").to_numpy()
    v = block.column("v").to_numpy()
    u, v, m = _group_min(u, v)
    m = np.minimum(m, u)
    # every neighbour (all v <= u here) and u itself link to m
    if not len(u):
        return _table(u, m)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    out_u = np.concatenate([v, u[starts]])
    out_m = np.concatenate([m, m[starts]])
    return _table(*_dedupe(out_u, out_m))


def _both_directions(block: pa.Table) -> pa.Table:
    u = block.column("u").to_numpy()
    v = block.column("v").to_numpy()
    return _table(np.concatenate([u, v]), np.concatenate([v, u]))


def _orient_down(block: pa.Table) -> pa.Table:
    u = block.column("u").to_numpy()
    v = block.column("v").to_numpy()
    return _table(np.maximum(u, v), np.minimum(u, v))


def _checksum(block: pa.Table) -> pa.Table:
    u = block.column("u").to_numpy().astype(np.uint64)
    v = block.column("v").to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (u * np.uint64(0x9E3779B97F4A7C15)) ^ (v * np.uint64(0xC2B2AE3D27D4EB4F))
        h ^= h >> np.uint64(29)
    return pa.table({"n": [len(u)], "s": pa.array([int(np.bitwise_xor.reduce(h)) if len(h) else 0], pa.uint64())})


def _signature(ds) -> tuple[int, int]:
    rows = ds.map_batches(_checksum, batch_format="pyarrow", batch_size=None).take_all()
    n = sum(r["n"] for r in rows)
    s = 0
    for r in rows:
        s ^= r["s"]
    return n, s


def components_local(*blocks: pa.Table) -> pa.Table:
    """The same (node, root) rows for an edge list small enough for one task: scipy's connected components over
    the nodes renumbered densely; each component's root is its smallest node id, as at the rounds' fixed point."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scc

    t = pa.concat_tables([b for b in blocks if b.num_rows])
    u, v = t.column("u").to_numpy(), t.column("v").to_numpy()
    nodes, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    n = len(nodes)
    graph = coo_matrix((np.ones(len(u), np.int8), (inv[:len(u)], inv[len(u):])), shape=(n, n))
    _, label = scc(graph, directed=True, connection="weak")
    root = np.full(label.max() + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(root, label, nodes)
    node_root = root[label]
    keep = nodes != node_root
    return _table(nodes[keep], node_root[keep])


def connected_components(edges, partitions: int, max_rounds: int = 64):
    """Edges (u, v) as a Ray Dataset -> Dataset of (u, v) = (node, root) for every non-root node.

    Nodes that appear in no edge are singletons and are not in the output. Edges of at most
    ``ONE_TASK_BYTES`` are solved in one task (no rounds); the result is the same.
    """
    cur = edges.map_batches(_orient_down, batch_format="pyarrow", batch_size=None).materialize()
    if fits_one_task(cur):  # small: no rounds, one task
        import ray
        import ray.data

        return ray.data.from_arrow_refs([ray.remote(num_cpus=1)(components_local).remote(*arrow_blocks(cur))])
    prev = None
    for _ in range(max_rounds):
        large = shuffle_map(cur.map_batches(_both_directions, batch_format="pyarrow", batch_size=None), ["u"],
                            partitions, _large_star)
        small = shuffle_map(large.map_batches(_orient_down, batch_format="pyarrow", batch_size=None), ["u"],
                            partitions, _small_star).materialize()
        sig = _signature(small)
        cur = small
        if sig == prev:
            break
        prev = sig
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    return cur.map_batches(_orient_down, batch_format="pyarrow", batch_size=None)
