"""Run inside the trainers tool venv (tests/venvs/trainers.txt): read a curate output's token files with each
format's own library and print what they read, as JSON, for tests/test_formats.py to compare with the dolma layout.

    python read_formats.py OUT FORMAT...     # FORMAT: megatron, mds, litdata

megatron also rebuilds every shard with megatron-core's own IndexedDatasetBuilder from the documents it read and
reports whether the bytes are equal to curate's.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")


def megatron(out: str) -> dict:
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

    shards, same = {}, {}
    for idx in sorted(glob.glob(f"{out}/megatron/*.idx")):
        prefix = idx[:-4]
        ds = IndexedDataset(prefix)
        docs = [ds[i].tolist() for i in range(len(ds))]
        bounds = ds.document_indices.tolist()
        shards[os.path.basename(prefix)] = {"docs": docs, "document_indices": bounds, "dtype": str(ds[0].dtype)}
        with tempfile.TemporaryDirectory() as tmp:  # megatron-core's own writer, from the same documents
            b = IndexedDatasetBuilder(f"{tmp}/x.bin", dtype=ds[0].dtype.type)
            for i in range(len(ds)):
                b.add_document(torch.from_numpy(np.asarray(ds[i])), [len(ds[i])])
            b.finalize(f"{tmp}/x.idx")
            same[os.path.basename(prefix)] = all(
                open(f"{tmp}/x.{ext}", "rb").read() == open(f"{prefix}.{ext}", "rb").read() for ext in ("bin", "idx"))
    return {"shards": shards, "builder_equal": same}


def mds(out: str) -> dict:
    from streaming import StreamingDataset

    ds = StreamingDataset(local=f"{out}/mds", batch_size=1, shuffle=False)
    rows = [ds[i] for i in range(len(ds))]
    return {"samples": [{"id": r["id"], "tokens": r["tokens"].tolist(), "dtype": str(r["tokens"].dtype)}
                        for r in rows]}


def litdata(out: str) -> dict:
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    got = {}
    for block in (1, 7):  # block 1: every token in order; 7: LitGPT-style blocks (each chunk's tail dropped)
        ds = StreamingDataset(f"{out}/litdata", item_loader=TokensLoader(block_size=block), shuffle=False)
        blocks = [ds[i] for i in range(len(ds))]
        got[str(block)] = {"tokens": [x for b in blocks for x in b.tolist()], "blocks": len(blocks),
                           "dtype": str(blocks[0].dtype) if blocks else None}
    return got


if __name__ == "__main__":
    out, *formats = sys.argv[1:]
    readers = {"megatron": megatron, "mds": mds, "litdata": litdata}
    print(json.dumps({f: readers[f](out) for f in formats}))
