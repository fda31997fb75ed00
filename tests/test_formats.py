"""Token files for trainers (`shard.formats`, `curate export`), each read by its own library: megatron-core's
IndexedDataset (and byte equality with its IndexedDatasetBuilder), mosaicml-streaming's StreamingDataset,
litdata's StreamingDataset with LitGPT's TokensLoader (tests/venvs/trainers.txt), and Hugging Face datasets.
Every document's tokens and boundaries are compared with the dolma layout's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, write_jsonl
from curate.config import ConfigError, parse_config
from curate.runner import run_pipeline
from operators.shard.tokens import read_part
from toolvenv import tool_venv

ALL = ["dolma", "megatron", "mds", "litdata", "hf_parquet"]
TOKENIZERS = {"int32": "tiktoken:cl100k_base", "uint16": "model:bundled:SmolLM2-135M-Instruct"}


def _texts() -> list[str]:
    """Real sentences from the bundled fixtures in several scripts, as documents of varied length; one holds the
    tokenizer's special-token text literally (it must stay ordinary text)."""
    lines = []
    for f in sorted((REPO / "tests" / "fixtures" / "sentences").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            lines += json.loads(line).get("sentences", [])
    docs = [" ".join(lines[i:i + 1 + i % 9]) for i in range(0, min(len(lines), 1200), 7)]
    docs += [" ".join(lines[i:i + 90]) for i in range(0, 400, 100)]  # longer than max_doc_tokens: split
    return docs + ["A page that says <|endoftext|> and <|im_end|> in its text."]


def _run(tmp: Path, name: str, tokenizer: str, formats: list[str]) -> Path:
    inp = tmp / "in"
    if not inp.exists():
        inp.mkdir()
        texts = _texts()
        for k in range(3):
            write_jsonl(inp / f"p{k}.jsonl", [{"id": f"d{k}-{i}", "text": t} for i, t in enumerate(texts[k::3])])
    cfg = parse_config({"input": {"paths": [str(inp)], "source": "fmt"},
                        "output": {"added": "2026-01-01T00:00:00Z"},
                        "steps": [{"name": "shard", "tokenizer": tokenizer, "tokens_per_shard": 4000,
                                   "max_doc_tokens": 700, "formats": formats}]})
    out = tmp / name
    run_pipeline(cfg, str(out), progress=False)
    return out


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("formats")
    return {dt: _run(tmp, f"all-{dt}", spec, ALL) for dt, spec in TOKENIZERS.items()} | {
        "dolma-only": _run(tmp, "dolma-only", TOKENIZERS["int32"], ["dolma"])}


def dolma_docs(out: Path) -> list[tuple[str, list[int]]]:
    """(id, tokens) of every document in the dolma layout, shard by shard."""
    vocab = json.loads((out / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    return [(d["id"], d["tokens"].tolist()) for f in sorted((out / "tokens").glob("part-*.npy"))
            for d in read_part(f, vocab)]


@pytest.fixture(scope="module")
def trainers() -> Path:
    return tool_venv("trainers")


def read_with_libraries(venv: Path, out: Path) -> dict:
    p = subprocess.run([str(venv / "bin" / "python"), str(REPO / "tests" / "tools" / "read_formats.py"), str(out),
                        "megatron", "mds", "litdata"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", ["int32", "uint16"])
def test_every_format_holds_the_dolma_layouts_documents(runs, trainers, dtype):
    out = runs[dtype]
    expected = dolma_docs(out)
    assert len(expected) > 30 and len({len(t) for _, t in expected}) > 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["formats"]) == set(ALL) | {"provenance"}
    eos = manifest["eos_token_id"]
    assert all(t[-1] == eos for _, t in expected)
    got = read_with_libraries(trainers, out)

    mg = got["megatron"]
    assert all(mg["builder_equal"].values()) and len(mg["builder_equal"]) == manifest["totals"]["shards"]
    docs = [t for k in sorted(mg["shards"]) for t in mg["shards"][k]["docs"]]
    assert docs == [t for _, t in expected]
    for shard in mg["shards"].values():
        assert shard["document_indices"] == list(range(len(shard["docs"]) + 1))
        assert shard["dtype"] == dtype

    mds = got["mds"]["samples"]
    assert [(s["id"], s["tokens"]) for s in mds] == expected
    assert {s["dtype"] for s in mds} == {dtype}

    # TokensLoader cuts each chunk (one per shard) into fixed blocks: with block 1 every token comes back in order,
    # documents ending at each EOS; with block 7 each chunk's tail shorter than a block is left out
    lit = got["litdata"]
    flat = [x for _, t in expected for x in t]
    assert lit["1"]["tokens"] == flat and lit["1"]["dtype"] == f"torch.{dtype}"
    ends = [i + 1 for i, x in enumerate(lit["1"]["tokens"]) if x == eos]
    assert ends == list(np.cumsum([len(t) for _, t in expected]))
    per_shard = [s["tokens"] for s in manifest["shards"]]
    kept = [x for n, k in enumerate(per_shard)
            for x in flat[sum(per_shard[:n]):sum(per_shard[:n]) + k // 7 * 7]]
    assert lit["7"]["tokens"] == kept and lit["7"]["blocks"] == sum(k // 7 for k in per_shard)


@pytest.mark.parametrize("dtype", ["int32", "uint16"])
def test_hugging_face_parquet_loads_in_datasets(runs, dtype):
    import datasets

    out = runs[dtype]
    files = sorted(str(f) for f in (out / "hf_parquet").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert [(r["id"], r["input_ids"]) for r in ds] == dolma_docs(out)
    assert ds.features["input_ids"].feature.dtype == "int32"


def test_provenance_sidecar_says_where_each_document_came_from(runs):
    import pyarrow.parquet as pq

    out = runs["int32"]
    rows = [r for f in sorted((out / "provenance").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    expected = dolma_docs(out)
    assert [r["id"] for r in rows] == [i for i, _ in expected]
    assert all(r["end"] - r["start"] == len(t) for r, (_, t) in zip(rows, expected))
    assert {r["source"] for r in rows} == {"fmt"}
    assert {Path(r["file"]).name for r in rows} == {"p0.jsonl", "p1.jsonl", "p2.jsonl"}
    split = [r for r in rows if "-part-" in r["id"]]  # pieces of a long document keep its input file
    assert split and all(r["file"].endswith(f"p{r['id'][1]}.jsonl") for r in split)


def test_export_writes_the_same_bytes_as_the_run(runs, tmp_path):
    from curate.cli import main

    ran, plain = runs["int32"], runs["dolma-only"]
    assert not (plain / "megatron").exists()
    assert main(["export", str(plain), "--format", "megatron", "--format", "mds", "--format", "litdata",
                 "--format", "hf_parquet"]) == 0
    for sub in ("megatron", "mds", "litdata", "hf_parquet", "provenance"):
        a = sorted(p.relative_to(ran) for p in (ran / sub).rglob("*") if p.is_file())
        b = sorted(p.relative_to(plain) for p in (plain / sub).rglob("*") if p.is_file())
        assert a == b and a, sub
        for rel in a:
            assert (ran / rel).read_bytes() == (plain / rel).read_bytes(), rel
    m = json.loads((plain / "manifest.json").read_text())
    assert set(m["formats"]) == set(ALL) | {"provenance"}
    # elsewhere: the files and an export.json naming the run
    assert main(["export", str(plain), "--format", "megatron", "--to", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "megatron" / "shard-00000.idx").read_bytes() == (ran / "megatron" / "shard-00000.idx"
                                                                             ).read_bytes()
    assert json.loads((tmp_path / "x" / "export.json").read_text())["from"] == str(plain)


def test_bad_formats_and_exports_are_one_line(tmp_path, capsys):
    from curate.cli import main

    with pytest.raises(ConfigError, match="formats"):
        parse_config({"input": {"paths": ["x"]}, "steps": [{"name": "shard", "formats": ["megatron", "megatron"]}]})
    with pytest.raises(ConfigError, match="formats"):
        parse_config({"input": {"paths": ["x"]}, "steps": [{"name": "shard", "formats": ["parquet"]}]})
    assert main(["export", str(tmp_path), "--format", "megatron"]) == 2
    assert "manifest.json: not found" in capsys.readouterr().err
