"""Token files for the trainers people use, written from the same ids as the dolma layout, one file set per shard.

Every writer is a pure function of one shard's documents (ids, token ids with BOS/EOS already in place, document
boundaries, provenance), so `shard` during a run and `curate export` after it write the same bytes. The layouts
are written from their specifications (read from each library's source) with numpy and json only; each is read
back by its own library in tests/test_formats.py.

- ``dolma``: ``tokens/part-<n>-00000.npy`` + ``.csv.gz`` (`dolma tokens`, OLMo-core; see tokens.py).
- ``megatron``: ``megatron/shard-<n>.bin`` + ``.idx`` (Megatron-LM / NeMo ``IndexedDataset``, MMIDIDX version 1):
  one sequence per document, ``document_indices`` 0..n; byte-equal to megatron-core's ``IndexedDatasetBuilder``.
- ``mds``: ``mds/shard.<n>.mds`` + ``mds/index.json`` (MosaicML streaming, LLM Foundry): columns ``id`` (str)
  and ``tokens`` (``ndarray:<dtype>``), one sample per document.
- ``litdata``: ``litdata/chunk-0-<n>.bin`` + ``litdata/index.json`` (LitData's optimized format as LitGPT
  pretrains from it with ``TokensLoader``): one item per document, a headerless 1-D token array.
- ``hf_parquet``: ``hf_parquet/shard-<n>.parquet`` with ``id`` and ``input_ids`` (Hugging Face datasets).

Besides the formats, ``provenance/shard-<n>.parquet`` says where each document's tokens are and where it came
from: ``id``, ``source``, ``file`` (the input file), ``start``, ``end`` (token offsets in the shard, end exclusive).
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("dolma", "megatron", "mds", "litdata", "hf_parquet")
# formats whose shards are listed in one index file for the whole output (written once every shard is done)
INDEXED = ("mds", "litdata")


@dataclass
class ShardTokens:
    """One shard's documents as every format writes them."""

    n: int
    ids: list[str]
    sources: list[str]
    files: list[str]
    tokens: np.ndarray  # every document's ids, BOS/EOS included, concatenated in shard order
    offsets: np.ndarray  # int64, len(ids) + 1: document i is tokens[offsets[i]:offsets[i + 1]]
    vocab_size: int

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]


def dtype_for(fmt: str, vocab_size: int) -> np.dtype:
    """uint16 where every id fits (up to 65,536 ids), else the wider type the format's readers expect: Megatron's
    and LitData's int32, dolma's uint32; Hugging Face parquet takes int32 (what `datasets` and torch read)."""
    if vocab_size <= 65536 and fmt != "hf_parquet":
        return np.dtype(np.uint16)
    return np.dtype(np.uint32 if fmt == "dolma" else np.int32)


# ------------------------------------------------------------------------------------------------- Megatron

_MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
_MEGATRON_DTYPES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
                    np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7,
                    np.dtype(np.uint16): 8}


def megatron(st: ShardTokens) -> dict[str, bytes]:
    """``.bin``: the token ids; ``.idx``: magic, version 1, dtype code, sequence and document counts, then the
    sequence lengths (int32), byte pointers (int64) and document indices (int64)."""
    dtype = dtype_for("megatron", st.vocab_size)
    lengths = np.diff(st.offsets).astype(np.int32)
    pointers = (st.offsets[:-1] * dtype.itemsize).astype(np.int64)
    documents = np.arange(len(st.ids) + 1, dtype=np.int64)
    idx = b"".join([_MEGATRON_MAGIC, struct.pack("<Q", 1), struct.pack("<B", _MEGATRON_DTYPES[dtype]),
                    struct.pack("<Q", len(lengths)), struct.pack("<Q", len(documents)),
                    lengths.tobytes(), pointers.tobytes(), documents.tobytes()])
    name = f"megatron/shard-{st.n:05d}"
    return {f"{name}.bin": st.tokens.astype(dtype).tobytes(), f"{name}.idx": idx}


# ------------------------------------------------------------------------------------------------- HF parquet


def hf_parquet(st: ShardTokens) -> dict[str, bytes]:
    dtype = dtype_for("hf_parquet", st.vocab_size)
    values = pa.array(st.tokens.astype(dtype))
    table = pa.table({"id": pa.array(st.ids, pa.string()),
                      "input_ids": pa.ListArray.from_arrays(pa.array(st.offsets.astype(np.int32)), values)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=10_000)
    return {f"hf_parquet/shard-{st.n:05d}.parquet": buf.getvalue()}


# ------------------------------------------------------------------------------------------------- provenance


def provenance(st: ShardTokens) -> dict[str, bytes]:
    table = pa.table({"id": pa.array(st.ids, pa.string()), "source": pa.array(st.sources, pa.string()),
                      "file": pa.array(st.files, pa.string()),
                      "start": pa.array(st.offsets[:-1], pa.int64()), "end": pa.array(st.offsets[1:], pa.int64())})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return {f"provenance/shard-{st.n:05d}.parquet": buf.getvalue()}


# ------------------------------------------------------------------------------------------------- MDS


def _uint32_offsets(head: int, sizes: list[int], what: str) -> np.ndarray:
    """Absolute offsets of items after a header, as the uint32s MDS shards and LitData chunks store."""
    offsets = head + np.r_[0, np.cumsum(np.asarray(sizes, dtype=np.int64))]
    if offsets[-1] >= 2**32:
        raise ValueError(f"{what}: {offsets[-1]:,} bytes, over the format's 4 GiB (uint32 offsets): lower "
                         "shard.tokens_per_shard")
    return offsets.astype("<u4")


def _mds_array(a: np.ndarray) -> bytes:
    """``ndarray:<dtype>``: one byte ``(ndim << 2) | shape code``, the shape in the smallest unsigned type that
    holds it (code 0-3: uint8, 16, 32, 64), then the values."""
    n = a.size
    code = 0 if n < 1 << 8 else 1 if n < 1 << 16 else 2 if n < 1 << 32 else 3
    shape_type = ("<u1", "<u2", "<u4", "<u8")[code]
    return bytes([(1 << 2) | code]) + np.array([n], shape_type).tobytes() + a.tobytes()


def mds(st: ShardTokens) -> tuple[dict[str, bytes], dict[str, Any]]:
    """``shard.<n>.mds``: sample count, N+1 absolute uint32 offsets, the shard's config as JSON, then one sample
    per document: a uint32 size per variable-size column, then the columns (sorted by name: id, tokens)."""
    dtype = dtype_for("mds", st.vocab_size)
    config = {"column_encodings": ["str", f"ndarray:{dtype.name}"], "column_names": ["id", "tokens"],
              "column_sizes": [None, None], "compression": None, "format": "mds", "hashes": [],
              "size_limit": None, "version": 2}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    samples = []
    for i, did in enumerate(st.ids):
        cols = [did.encode("utf-8"), _mds_array(st.doc(i).astype(dtype))]
        samples.append(np.array([len(c) for c in cols], "<u4").tobytes() + b"".join(cols))
    n = len(samples)
    basename = f"shard.{st.n:05d}.mds"
    offsets = _uint32_offsets(4 + 4 * (n + 1) + len(config_bytes), [len(x) for x in samples], f"mds/{basename}")
    data = np.array([n], "<u4").tobytes() + offsets.tobytes() + config_bytes + b"".join(samples)
    entry = {**config, "samples": n, "raw_data": {"basename": basename, "bytes": len(data), "hashes": {}},
             "zip_data": None}
    return {f"mds/{basename}": data}, entry


# ------------------------------------------------------------------------------------------------- LitData

# LitData's serializer names for a headerless 1-D torch tensor, by dtype (its _TORCH_DTYPES_MAPPING, whose
# inverted aliases make int32 16, as LitGPT's files say)
_LITDATA_FORMAT = {np.dtype(np.uint16): "no_header_tensor:20", np.dtype(np.int32): "no_header_tensor:16"}


def litdata(st: ShardTokens) -> tuple[dict[str, bytes], dict[str, Any]]:
    """``chunk-0-<n>.bin``: item count, N+1 absolute uint32 offsets, then each document's tokens with no
    per-item header (what ``TokensLoader`` reads: it cuts the chunk's tokens into fixed blocks)."""
    dtype = dtype_for("litdata", st.vocab_size)
    n = len(st.ids)
    name = f"chunk-0-{st.n}.bin"
    sizes = (np.diff(st.offsets) * dtype.itemsize).tolist()
    offsets = _uint32_offsets(4 + 4 * (n + 1), sizes, f"litdata/{name}")
    data = np.array([n], "<u4").tobytes() + offsets.tobytes() + st.tokens.astype(dtype).tobytes()
    return {f"litdata/{name}": data}, {"chunk_bytes": len(data), "chunk_size": n, "dim": int(st.offsets[-1]),
                                       "filename": name}


WRITERS = {"megatron": megatron, "hf_parquet": hf_parquet}
INDEX_WRITERS = {"mds": mds, "litdata": litdata}


def write_shard(st: ShardTokens, formats: list[str]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of one shard in the requested formats (not dolma: tokens.py), the provenance sidecar, and what
    the indexed formats need from this shard for their index file (``index[fmt]``)."""
    files: dict[str, bytes] = {}
    index: dict[str, Any] = {}
    for fmt in formats:
        if fmt in WRITERS:
            files.update(WRITERS[fmt](st))
        elif fmt in INDEX_WRITERS:
            made, index[fmt] = INDEX_WRITERS[fmt](st)
            files.update(made)
    files.update(provenance(st))
    return files, index


def index_files(formats: list[str], index: list[dict[str, Any]], vocab_size: int) -> dict[str, bytes]:
    """The index files of the indexed formats, from every shard's entry (in shard order)."""
    out = {}
    if "mds" in formats:
        out["mds/index.json"] = _json({"shards": [e["mds"] for e in index], "version": 2})
    if "litdata" in formats:
        chunks = [e["litdata"] for e in index]
        dtype = dtype_for("litdata", vocab_size)
        config = {"chunk_bytes": max([c["chunk_bytes"] for c in chunks], default=0), "chunk_size": None,
                  "compression": None, "data_format": [_LITDATA_FORMAT[dtype]],
                  "data_spec": json.dumps([1, {"type": None, "context": None, "children_spec": []}]),
                  "encryption": None, "item_loader": "TokensLoader"}
        out["litdata/index.json"] = _json({"chunks": chunks, "config": config})
    return out


PREFIX = {"dolma": "tokens/part-", "megatron": "megatron/", "mds": "mds/", "litdata": "litdata/",
          "hf_parquet": "hf_parquet/"}


def manifest_entry(formats: list[str], shards: list[dict[str, Any]], vocab_size: int, totals: dict[str, int]
                   ) -> dict[str, Any]:
    """manifest.json's ``formats``: per format its dtype, files (index files included) and counts."""
    out = {}
    for f in formats:
        files = [x for s in shards for x in s["files"] if x.startswith(PREFIX[f])]
        if f in INDEXED:
            files.append(f"{f}/index.json")
        out[f] = {"dtype": dtype_for(f, vocab_size).name, "files": files, "documents": totals["documents"],
                  "tokens": totals["tokens"]}
    if formats:
        out["provenance"] = {"files": [x for s in shards for x in s["files"] if x.startswith("provenance/")],
                             "columns": ["id", "source", "file", "start", "end"]}
    return out


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()
