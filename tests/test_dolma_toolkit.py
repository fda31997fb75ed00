"""curate's output as Dolma users consume it, checked with their own tools, as written by the default pipeline:

* the `dolma` toolkit 1.2.1 from PyPI: every attribute line decodes with dolma's own attribute schema;
  `dolma stat` on every attribute set; `dolma mix` with a numeric filter, a language filter and a
  `span_replacement` on the sentence spans (compared with the documents); `dolma tokens` with the tokenizer.json
  curate writes beside its tokens (ids equal to curate's, but for dolma's documented whitespace stripping);
* Hugging Face `datasets` 3.6 (in the dolma venv) and 5.2 (the latest) load the documents and each attribute set;
* OLMo-core 3.0 (the trainer side): `iter_document_indices` finds every document boundary in curate's token files
  from the manifest's EOS id and dtype alone, and its metadata reader agrees.

The tools live in cached venvs (tests/toolvenv.py); the first run builds them (a few minutes), later runs reuse them.
"""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO
from curate.config import parse_config
from curate.runner import run_pipeline
from curate.writer import read_jsonl
from operators.shard.tokens import read_part
from toolvenv import tool_venv

ADDED = "2026-01-01T00:00:00Z"
SETS = ("c4", "exact_dedup", "gopher", "langid", "minhash_dedup", "pii", "preselect", "segment")


@pytest.fixture(scope="module")
def out(ray_session, tmp_path_factory) -> Path:
    """The default pipeline.yaml as `make run` runs it (shards and tokens included)."""
    raw = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    raw["output"]["added"] = ADDED
    o = tmp_path_factory.mktemp("dolma") / "out"
    run_pipeline(parse_config(raw, str(REPO / "pipeline.yaml")), str(o), progress=False)
    return o


@pytest.fixture(scope="module")
def dolma() -> Path:
    return tool_venv("dolma")


@pytest.fixture(scope="module")
def latest() -> Path:
    return tool_venv("datasets5")


def run(venv: Path, *args: str, cwd: Path | None = None) -> str:
    """A command of a tool venv (bin/<tool> or a python -c script); its failure shows the tool's own output."""
    exe, *rest = args
    p = subprocess.run([str(venv / "bin" / exe), *rest], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert p.returncode == 0, f"{exe} {' '.join(rest)[:200]} -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def docs_of(out: Path) -> list[dict]:
    return [d for f in sorted((out / "documents" / "cc-sample").glob("*.jsonl.gz")) for d in read_jsonl(f)]


def attrs_of(out: Path, aset: str) -> dict[str, dict]:
    return {a["id"]: a["attributes"] for f in sorted((out / "attributes" / aset / "cc-sample").glob("*.jsonl.gz"))
            for a in read_jsonl(f)}


def test_every_line_decodes_with_dolmas_schema(out, dolma):
    """dolma's msgspec structs (what its taggers, mixer and analyzer decode with), strictly: spans
    [int, int, float], every document with added and created."""
    script = textwrap.dedent("""
        import glob, gzip, sys, msgspec
        from dolma.core.data_types import InputSpecWithMetadata, OutputSpec
        docs = msgspec.json.Decoder(InputSpecWithMetadata)
        attrs = msgspec.json.Decoder(OutputSpec)
        n = {"docs": 0, "attrs": 0, "spans": 0}
        for f in sorted(glob.glob(sys.argv[1] + "/documents/*/*.jsonl.gz")):
            for line in gzip.open(f):
                d = docs.decode(line)
                assert d.added and d.created and d.text, d.id
                n["docs"] += 1
        for f in sorted(glob.glob(sys.argv[1] + "/attributes/*/*/*.jsonl.gz")):
            for line in gzip.open(f):
                a = attrs.decode(line)
                for key, spans in a.attributes.items():
                    assert key.count("__") == 2, key
                    for s, e, v in spans:
                        assert type(s) is int and type(e) is int and type(v) is float, (key, s, e, v)
                        n["spans"] += 1
                n["attrs"] += 1
        print(n)
    """)
    n = eval(run(dolma, "python", "-c", script, str(out)))  # noqa: S307 (our own script's dict)
    docs = docs_of(out)
    assert n["docs"] == len(docs) > 20
    sets = [p for p in (out / "attributes").iterdir() if p.is_dir()]
    assert {p.name for p in sets} >= set(SETS)
    assert n["attrs"] == len(sets) * len(docs) and n["spans"] > 1000
    assert all(d["added"] == ADDED and d["created"] for d in docs)


def test_dolma_stat_on_every_attribute_set(out, dolma, tmp_path):
    names = {}
    for aset in SETS:
        report = tmp_path / aset
        run(dolma, "dolma", "stat", "--attributes", str(out / "attributes" / aset / "cc-sample" / "*.jsonl.gz"),
            "--report", str(report), "--processes", "1")
        with gzip.open(report / "summaries.jsonl.gz", "rt") as f:
            names[aset] = {json.loads(line)["name"].split("/")[0] for line in f}
        assert names[aset] and all(n.startswith(f"{aset}__") for n in names[aset]), names[aset]
    # language as one numeric key per language, as dolma's language taggers write it
    assert {"langid__fasttext__en", "langid__fasttext__zh", "langid__fasttext__confidence"} <= names["langid"]
    assert names["exact_dedup"] == {"exact_dedup__exact__duplicate", "exact_dedup__exact__cluster_size"}
    assert names["segment"] == {"segment__sentences__spans", "segment__sentences__count"}
    # C4's removed lines and the PII found: span attributes with the rule in the name, moved to the edited text
    assert {"c4__lines__too_few_words", "c4__doc__sentences"} <= names["c4"]
    assert {"pii__regex__email", "pii__regex__ip"} <= names["pii"]


def test_dolma_mix_filters_and_replaces_sentence_spans(out, dolma, tmp_path):
    """A language filter, a numeric filter and a span replacement, as a Dolma user writes them; the mixed
    documents are exactly what the attribute files say they should be."""
    cfg = {
        "streams": [{
            "name": "curate",
            "documents": [str(out / "documents" / "cc-sample" / "*.jsonl.gz")],
            "attributes": ["langid", "gopher", "segment"],
            "output": {"path": str(tmp_path / "mixed"), "max_size_in_bytes": 10 ** 9},
            "filter": {
                "include": ["$.attributes[?(@.langid__fasttext__en && @.langid__fasttext__en[0][2] >= 0.5)]"],
                "exclude": ["$.attributes[?(@.gopher__quality__words && "
                            "@.gopher__quality__words[0][2] < 200)]"],
            },
            "span_replacement": [{"span": "$.attributes.segment__sentences__spans", "min_score": 0.0,
                                  "max_score": 0.75, "replacement": ""}],
        }],
        "work_dir": {"input": str(tmp_path / "w_in"), "output": str(tmp_path / "w_out")},
        "processes": 1,
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    run(dolma, "dolma", "-c", str(tmp_path / "mix.yaml"), "mix")
    mixed = {d["id"]: d["text"] for f in sorted((tmp_path / "mixed").glob("*.json.gz")) for d in read_jsonl(f)}

    lang, qual, seg = attrs_of(out, "langid"), attrs_of(out, "gopher"), attrs_of(out, "segment")
    want = {}
    replaced = 0
    for d in docs_of(out):
        en = lang[d["id"]].get("langid__fasttext__en")
        wc = qual[d["id"]].get("gopher__quality__words")
        if not (en and en[0][2] >= 0.5) or (wc and wc[0][2] < 200):
            continue
        text, pos, kept = d["text"], 0, []
        for s, e, v in seg[d["id"]]["segment__sentences__spans"]:
            if v <= 0.75:
                kept.append(text[pos:s])
                pos = e
                replaced += 1
        want[d["id"]] = "".join(kept) + text[pos:]
    assert want and replaced, "the filters and the replacement must both act on the sample"
    assert mixed == want


def test_dolma_tokens_with_curates_tokenizer_json(out, dolma, tmp_path):
    """`dolma tokens` with the tokenizer.json beside curate's tokens and the manifest's EOS id gives curate's ids
    (dolma strips each text first; such documents are compared on the stripped text)."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["eos_token_id"] == 100257 and manifest["eos_token"] == "<|endoftext|>"
    assert manifest["bos_token_id"] is None and manifest["tokenizer"]["tokenizer_json"] == "tokens/tokenizer.json"
    run(dolma, "dolma", "tokens", "--documents", str(out / "documents" / "cc-sample" / "*.jsonl.gz"),
        "--destination", str(tmp_path / "tok"), "--tokenizer.name_or_path", str(out / "tokens" / "tokenizer.json"),
        "--tokenizer.eos_token_id", str(manifest["eos_token_id"]), "--tokenizer.encode_special_tokens",
        "--dtype", manifest["token_dtype"], "--processes", "1", "--seed", "0")
    vocab = manifest["tokenizer"]["vocab_size"]
    theirs = {d["id"]: d["tokens"].tolist() for f in (tmp_path / "tok").glob("*.npy") for d in read_part(f, vocab)}
    ours = {d["id"]: d["tokens"].tolist() for f in (out / "tokens").glob("*.npy") for d in read_part(f, vocab)}
    assert set(theirs) == set(ours) and len(ours) == manifest["totals"]["documents"]
    from operators.shard.tokenizers import load

    tok = load(manifest["tokenizer"]["spec"])
    texts = {d["id"]: d["text"] for d in docs_of(out)}
    stripped = [i for i, t in texts.items() if t != t.strip()]
    for i, ids in ours.items():
        if i in stripped:
            assert theirs[i] == tok.encode_arrays([texts[i].strip()])[0].tolist() + [manifest["eos_token_id"]]
        else:
            assert theirs[i] == ids, i
    assert sum(map(len, ours.values())) == manifest["totals"]["tokens"]
    assert manifest["totals"]["tokens"] == manifest["totals"]["text_tokens"] + manifest["totals"]["documents"]


LOAD = textwrap.dedent("""
    import glob, gzip, json, sys, datasets
    datasets.disable_progress_bars()
    out, sets = sys.argv[1], sys.argv[2].split(",")
    n = {}
    ds = datasets.load_dataset("json", data_files=sorted(glob.glob(out + "/documents/*/*.jsonl.gz")), split="train")
    assert {"id", "text", "added", "created", "metadata"} <= set(ds.column_names), ds.column_names
    n["documents"] = ds.num_rows
    span = datasets.Sequence(datasets.Sequence(datasets.Value("float64")))
    for s in sets:
        files = sorted(glob.glob(out + f"/attributes/{s}/*/*.jsonl.gz"))
        try:  # types inferred file by file
            a = datasets.load_dataset("json", data_files=files, split="train")
        except Exception:  # a key with no span in a whole file (typed as a list of nulls there): say the types
            keys = json.loads(gzip.open(files[0]).readline())["attributes"]
            features = datasets.Features({"id": datasets.Value("string"), "source": datasets.Value("string"),
                                          "attributes": {k: span for k in keys}})
            a = datasets.load_dataset("json", data_files=files, split="train", features=features)
            n.setdefault("with_features", []).append(s)
        assert a["id"] == ds["id"], s
        n[s] = a.num_rows
    print(datasets.__version__, n)
""")


@pytest.mark.parametrize("which", ["3.x", "latest"])
def test_datasets_loads_documents_and_every_attribute_set(out, which, dolma, latest):
    venv = dolma if which == "3.x" else latest
    version, counts = run(venv, "python", "-c", LOAD, str(out), ",".join(SETS)).split(" ", 1)
    assert version.startswith("3.6" if which == "3.x" else "5.")
    counts = eval(counts)  # noqa: S307 (our own script's dict)
    # the sets whose keys can be empty in a whole file (C4's line rules, PII) need the types said (docs/how-to/trainers.md)
    assert set(counts.pop("with_features", [])) <= {"c4", "pii"}
    assert set(counts.values()) == {len(docs_of(out))}


def test_olmo_core_finds_every_document_boundary(out, latest):
    """The trainer side: OLMo-core's own boundary search over the token array, given only the manifest's EOS id and
    dtype, finds exactly the documents of curate's index; its metadata-file reader agrees."""
    manifest = json.loads((out / "manifest.json").read_text())
    script = textwrap.dedent("""
        import glob, json, sys, numpy as np
        from olmo_core.data.utils import iter_document_indices
        m = json.load(open(sys.argv[1] + "/manifest.json"))
        out = {}
        for f in sorted(glob.glob(sys.argv[1] + "/tokens/*.npy")):
            by_eos = list(iter_document_indices(f, eos_token_id=m["eos_token_id"], dtype=getattr(np, m["token_dtype"])))
            by_meta = list(iter_document_indices(f, use_array_if_local=False))
            out[f] = [[[int(a), int(b)] for a, b in by_eos], [[int(a), int(b)] for a, b in by_meta]]
        print(json.dumps(out))
    """)
    found = json.loads(run(latest, "python", "-c", script, str(out)))
    assert len(found) == manifest["totals"]["shards"]
    n = 0
    for f, (by_eos, by_meta) in found.items():
        with gzip.open(Path(f).with_suffix(".csv.gz"), "rt") as idx:
            ours = [[int(r.split(",")[0]), int(r.split(",")[1])] for r in idx]
        assert by_eos == ours == by_meta
        arr = np.fromfile(f, dtype=manifest["token_dtype"])
        assert all(arr[e - 1] == manifest["eos_token_id"] for _, e in ours)
        assert (arr == manifest["eos_token_id"]).sum() == len(ours)  # no EOS id inside a document
        n += len(ours)
    assert n == manifest["totals"]["documents"]


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_tiktoken_as_tokenizer_json_gives_tiktokens_ids(encoding, dolma, tmp_path):
    """The tokenizer.json curate writes for a tiktoken spec, loaded by the `tokenizers` dolma pins (0.19.1), encodes
    to exactly tiktoken's ids: the 69-language sentence corpus (train split, 40 documents a language, run
    together) where ../shared is present, else the 4-language fixtures; plus hard cases in several scripts."""
    from operators.shard.export import tokenizer_json
    from operators.shard.tokenizers import load

    shared = REPO.parent / "shared" / "data" / "sentences" / "train"
    files = sorted(shared.glob("*.jsonl")) or sorted((REPO / "tests" / "fixtures" / "sentences").glob("*.jsonl"))
    texts = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            texts.append("\n".join(json.loads(line)["text"] for line in itertools.islice(fh, 40)))
    texts += ["0000 12345 x1234567", "it's IT'S we'LL", "  \n\n\t spaces  ", "<|endoftext|>", "🤖🏽 é\u0301 \r\n",
              "emoji😀😀 ...!!! ?!", "東京は日本の首都です。", "مرحبا بالعالم ١٢٣٤", "नमस्ते दुनिया", "Привет, мир!",
              "ภาษาไทย", "한국어 텍스트", "CamelCaseWord snake_case_word", "https://example.com/a?b=c&d=e"]
    assert len(texts) >= 16
    tok = load(f"tiktoken:{encoding}")
    (tmp_path / "tokenizer.json").write_bytes(tokenizer_json(tok))
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = textwrap.dedent("""
        import json, sys, tokenizers
        t = tokenizers.Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
        t.encode_special_tokens = True
        texts = json.load(open(sys.argv[1] + "/texts.json"))
        print(tokenizers.__version__, json.dumps([e.ids for e in t.encode_batch(texts, add_special_tokens=False)]))
    """)
    version, ids = run(dolma, "python", "-c", script, str(tmp_path)).split(" ", 1)
    assert version == "0.19.1"
    assert json.loads(ids) == [x.tolist() for x in tok.encode_arrays(texts)]
