"""Exact and MinHash dedup on real text from the bundled sample, with near-duplicates at known edit rates."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import trafilatura
from datasketch import MinHash

from conftest import sample_responses, write_jsonl
from curate.config import parse_config
from operators.dedup.common import normalize
from curate.runner import run_pipeline
from operators.dedup.minhash import (band_keys, optimal_bands_rows, permutations, signature, token_hashes,
                                     uses_char_shingles)


def real_texts(min_words: int = 80) -> list[str]:
    """Paragraph groups of real pages of the bundled sample, extracted with trafilatura."""
    out = []
    for _, _, body in sample_responses(html_only=False, pattern="*.warc.gz"):
        text = trafilatura.extract(body.decode("utf-8", "replace"))
        if text and len(text.split()) >= min_words:
            words = text.split()
            for s in range(0, len(words) - min_words + 1, 400):
                out.append(" ".join(words[s:s + 300]))
    uniq = sorted(set(out))
    # keep texts that are mutually unrelated (5-gram Jaccard < 0.3), so "unrelated" is true by construction
    kept: list[str] = []
    for t in uniq:
        if all(jaccard(t, k) < 0.3 for k in kept):
            kept.append(t)
    return kept


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = normalize(text).split()
    return {tuple(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(1, len(sa | sb))


def edit(text: str, rate: float, rng: random.Random, region: tuple[float, float] = (0, 1)) -> str:
    words = text.split()
    lo, hi = int(region[0] * len(words)), int(region[1] * len(words))
    k = max(1, int(rate * len(words)))
    for i in rng.sample(range(lo, hi), min(k, hi - lo)):
        words[i] = f"edit{rng.randint(0, 10**9)}"
    return " ".join(words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(7)
    texts = real_texts()
    assert len(texts) >= 40, len(texts)
    docs, truth = [], {}  # truth: variant id -> (base id, true jaccard)
    for i, t in enumerate(texts):
        docs.append({"id": f"base{i:03d}", "text": t})
    for i, t in enumerate(texts[:30]):
        for j, rate in enumerate((0.002, 0.005, 0.01, 0.03, 0.08)):
            v = edit(t, rate, rng)
            vid = f"var{i:03d}_{j}"
            docs.append({"id": vid, "text": v})
            truth[vid] = (f"base{i:03d}", jaccard(t, v))
    # transitive chains: a ~ b ~ c with a and c further apart than the LSH threshold alone would join
    chains = []
    for i, t in enumerate(texts[30:38]):
        b = edit(t, 0.012, rng, (0.0, 0.5))
        c = edit(b, 0.012, rng, (0.5, 1.0))
        assert jaccard(t, b) >= 0.85 and jaccard(b, c) >= 0.85 and jaccard(t, c) < min(jaccard(t, b), jaccard(b, c))
        ids = (f"chain{i}_a", f"chain{i}_b", f"chain{i}_c")
        docs += [{"id": ids[0], "text": t}, {"id": ids[1], "text": b}, {"id": ids[2], "text": c}]
        chains.append(ids)
    docs.append({"id": "exact_upper", "text": texts[0].upper()})  # exact duplicate after normalisation
    bad = [{"id": "bad_empty", "text": ""}, {"id": "bad_one", "text": "word"},
           {"id": "bad_short", "text": "three short words"}, {"id": "bad_short2", "text": "three short words"},
           {"id": "bad_zh", "text": "北京是中华人民共和国的首都，也是全国的政治中心和文化中心。" * 5},
           {"id": "bad_zh2", "text": "北京是中华人民共和国的首都，也是全国的政治中心和文化中心。" * 5 + "了"},
           {"id": "bad_ar", "text": "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها " * 10},
           {"id": "bad_long", "text": " ".join(texts[:40]) * 20}]
    docs += bad
    rng.shuffle(docs)
    d = tmp_path_factory.mktemp("dedup_in")
    for k in range(6):
        write_jsonl(d / f"part{k}.jsonl", docs[k::6])
    return d, docs, truth, chains


def _run(paths, out: Path, partitions: int = 8, block_bytes: int = 30_000, **minhash) -> dict[str, dict]:
    cfg = parse_config({
        "input": {"paths": paths, "docs_per_block": 8},
        "ray": {"target_max_block_bytes": block_bytes},
        "steps": [{"name": "exact_dedup", "partitions": partitions},
                  {"name": "minhash_dedup", "partitions": partitions, **minhash}],
    })
    stats = run_pipeline(cfg, str(out), progress=False)
    assert stats["totals"]["balanced"]
    t = pq.read_table(out / "stats" / "docs").to_pylist()
    return {r["id"]: r for r in t}, stats


@pytest.fixture(scope="module")
def result(ray_session, corpus, tmp_path_factory):
    d, _, _, _ = corpus
    return _run([str(d)], tmp_path_factory.mktemp("dd") / "out")


def test_distributed_path_uses_many_blocks(result):
    _, stats = result
    assert stats["totals"]["parts"] >= 8


def test_recall_of_pairs_above_0_9_jaccard(result, corpus):
    rows, _ = result
    _, _, truth, _ = corpus
    hi = [(v, b) for v, (b, j) in truth.items() if j >= 0.9]
    assert len(hi) >= 20
    same = sum(rows[v]["minhash_dedup__cluster"] == rows[b]["minhash_dedup__cluster"] for v, b in hi)
    assert same / len(hi) >= 0.95, (same, len(hi))


def test_unrelated_documents_are_never_merged(result, corpus):
    rows, _ = result
    _, docs, truth, chains = corpus
    family: dict[str, str] = {}
    for d in docs:
        i = d["id"]
        # chain{k}_a is base{30+k} itself, so a chain belongs to that base's family
        family[i] = truth[i][0] if i in truth else (
            f"base{30 + int(i[5:].split('_')[0]):03d}" if i.startswith("chain") else i)
    family["exact_upper"] = "base000"
    by_cluster = defaultdict(set)
    for i, r in rows.items():
        by_cluster[r["minhash_dedup__cluster"]].add(family[i])
    merged = [fams for fams in by_cluster.values() if len(fams) > 1]
    # bad_short/bad_short2 and bad_zh/bad_zh2 are their own (genuine) duplicates; base families never mix
    assert all(f <= {"bad_short", "bad_short2"} or f <= {"bad_zh", "bad_zh2"} for f in merged), merged


def test_transitive_chains_form_one_component(result, corpus):
    rows, _ = result
    _, _, _, chains = corpus
    for ids in chains:  # links at J >= 0.85 match with probability >= 0.988 under 14 x 8 bands
        assert len({rows[x]["minhash_dedup__cluster"] for x in ids}) == 1, ids
        # chain{k}_a is identical to base{30+k}, whose id is smaller: it represents the whole chain
        assert rows[ids[0]]["minhash_dedup__cluster"].startswith("base")


def test_representatives_and_sizes(result):
    rows, stats = result
    clusters = defaultdict(list)
    for i, r in rows.items():
        clusters[r["minhash_dedup__cluster"]].append(i)
    for rep, members in clusters.items():
        assert rep == min(members)
        assert all(rows[m]["minhash_dedup__minhash__cluster_size"] == len(members) for m in members)
        assert [m for m in members if (rows[m]["minhash_dedup__minhash__duplicate"] == 0)] == [rep]
    info = next(s for s in stats["steps"] if s["step"] == "minhash_dedup")["info"]
    assert info["duplicates"] == sum(len(m) - 1 for m in clusters.values())
    stages = set(next(s for s in stats["steps"] if s["step"] == "minhash_dedup")["stages"])
    assert "signatures" in stages and "decide_one_task" in stages  # a small corpus: decided in one task


def test_exact_duplicates(result):
    rows, _ = result
    assert rows["exact_upper"]["exact_dedup__cluster"] == "base000"
    assert (rows["base000"]["exact_dedup__exact__duplicate"] == 0) and not (rows["exact_upper"]["exact_dedup__exact__duplicate"] == 0)
    assert rows["bad_short2"]["exact_dedup__cluster"] == "bad_short"
    assert rows["bad_zh"]["exact_dedup__exact__cluster_size"] == 1  # one extra character: not exact


def test_bad_inputs_are_handled(result):
    rows, _ = result
    for i in ("bad_empty", "bad_one", "bad_long", "bad_ar"):
        assert rows[i]["fate"] == "kept" and rows[i]["minhash_dedup__cluster"] is not None
    assert rows["bad_zh"]["minhash_dedup__cluster"] == rows["bad_zh2"]["minhash_dedup__cluster"]  # char shingles


def test_same_clusters_with_other_files_blocks_and_partitions(ray_session, corpus, result, tmp_path):
    _, docs, _, _ = corpus
    rows, _ = result
    d = tmp_path / "in"
    d.mkdir()
    shuffled = list(reversed(docs))
    for k in range(3):
        write_jsonl(d / f"other{k}.jsonl", shuffled[k::3])
    rows2, _ = _run([str(d)], tmp_path / "out", partitions=3, block_bytes=200_000)
    assert {i: r["minhash_dedup__cluster"] for i, r in rows2.items()} == \
        {i: r["minhash_dedup__cluster"] for i, r in rows.items()}
    assert {i: r["exact_dedup__cluster"] for i, r in rows2.items()} == \
        {i: r["exact_dedup__cluster"] for i, r in rows.items()}


def test_filter_drops_duplicates_with_reasons(ray_session, corpus, tmp_path):
    d, docs, _, _ = corpus
    cfg = parse_config({"input": {"paths": [str(d)]}, "steps": [
        {"name": "exact_dedup"}, {"name": "minhash_dedup"},
        {"name": "filter", "rules": [{"reason": "exact_duplicate", "drop": "exact_dedup__exact__duplicate > 0"},
                                     {"reason": "near_duplicate", "drop": "minhash_dedup__minhash__duplicate > 0"}]}]})
    stats = run_pipeline(cfg, str(tmp_path / "o"), progress=False)
    f = next(s for s in stats["steps"] if s["step"] == "filter")
    assert f["dropped"]["exact_duplicate"] >= 2 and f["dropped"]["near_duplicate"] >= 30
    assert stats["totals"]["documents_in"] == len(docs) and stats["totals"]["balanced"]


def test_incremental_dedup_against_a_saved_index(ray_session, corpus, tmp_path):
    _, docs, truth, _ = corpus
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    bases = [d for d in docs if d["id"].startswith("base")]
    variants = [d for d in docs if d["id"] in truth and truth[d["id"]][1] >= 0.9]
    write_jsonl(old / "old.jsonl", bases)
    write_jsonl(new / "new.jsonl", variants + [{"id": "fresh", "text": "an entirely new document " * 20}])
    index = tmp_path / "index"
    run_pipeline(parse_config({"input": {"paths": [str(old)]}, "steps": [
        {"name": "minhash_dedup", "save_index": str(index)}]}), str(tmp_path / "o1"), progress=False)
    assert list(index.glob("*.parquet"))
    run_pipeline(parse_config({"input": {"paths": [str(new)]}, "steps": [
        {"name": "minhash_dedup", "against": [str(index)]}]}), str(tmp_path / "o2"), progress=False)
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "o2" / "stats" / "docs").to_pylist()}
    dup_share = np.mean([rows[v["id"]]["minhash_dedup__minhash__duplicate"] == 1.0 for v in variants])
    assert dup_share >= 0.95
    assert (rows["fresh"]["minhash_dedup__minhash__duplicate"] == 0)
    # an index is only comparable under the same signature parameters: other bands are refused, not matched
    from curate.config import ConfigError
    with pytest.raises(ConfigError, match=r"bands=14 \(this step: 7\), rows=8 \(this step: 16\)"):
        run_pipeline(parse_config({"input": {"paths": [str(new)]}, "steps": [
            {"name": "minhash_dedup", "bands": 7, "rows": 16, "against": [str(index)]}]}), str(tmp_path / "o3"),
            progress=False)
    (index / "_curate_index.json").unlink()
    with pytest.raises(ConfigError, match="rebuild it with save_index"):
        run_pipeline(parse_config({"input": {"paths": [str(new)]}, "steps": [
            {"name": "minhash_dedup", "against": [str(index)]}]}), str(tmp_path / "o4"), progress=False)


# ------------------------------------------------------------------------------------------ units
def test_signature_equals_datasketch_with_the_same_token_hashes():
    text = "the quick brown fox jumps over the lazy dog and keeps running far away " * 3
    hashes = token_hashes(normalize(text), 5, 5, False)
    ours = signature(hashes, 128, 42)
    m = MinHash(num_perm=128, seed=42, hashfunc=lambda x: x)
    m.update_batch([int(h) for h in hashes])
    assert np.array_equal(ours, m.hashvalues.astype(np.uint32))
    a, b = permutations(128, 42)
    assert (a % 2 == 1).all() and len(b) == 128
    for n, seed in ((112, 1), (256, 7)):  # drawn as datasketch draws them, without importing it in the run
        want = MinHash(num_perm=n, seed=seed, scheme="affine32").permutations
        assert np.array_equal(np.stack(permutations(n, seed)), np.asarray(want, dtype=np.uint32))


def test_estimated_jaccard_tracks_true_jaccard():
    rng = random.Random(3)
    texts = real_texts()[:10]
    for t in texts:
        v = edit(t, 0.02, rng)
        sa = signature(token_hashes(normalize(t), 5, 5, False), 256, 1)
        sb = signature(token_hashes(normalize(v), 5, 5, False), 256, 1)
        assert abs((sa == sb).mean() - jaccard(t, v)) < 0.12


def test_band_keys_differ_across_bands_and_match_within():
    s = signature(token_hashes("a b c d e f g", 5, 5, False), 112, 1)
    k = band_keys(s, 14, 8)
    assert len(set(k.tolist())) == 14
    assert np.array_equal(k, band_keys(s.copy(), 14, 8))
    many = np.stack([s, s[::-1].copy(), np.full(112, 7, np.uint32)])  # a block's signatures in one pass
    assert np.array_equal(band_keys(many, 14, 8), np.stack([band_keys(x, 14, 8) for x in many]))


def test_optimal_bands_rows_like_datasketch():
    from datasketch.lsh import _optimal_param

    for thr in (0.5, 0.7, 0.8):
        assert optimal_bands_rows(thr, 128) == _optimal_param(thr, 128, 0.5, 0.5)


def test_char_shingles_for_scripts_without_spaces():
    assert uses_char_shingles(normalize("北京是中华人民共和国的首都"))
    assert uses_char_shingles(normalize("東京は日本の首都です"))
    assert not uses_char_shingles(normalize("Paris est la capitale de la France"))
    assert len(token_hashes(normalize("北京是中华人民共和国的首都"), 5, 3, True)) == 11


def test_config_rejects_inconsistent_bands():
    from curate.config import ConfigError

    with pytest.raises(ConfigError, match="exceeds num_perm"):
        parse_config({"input": {"paths": ["x"]}, "steps": [{"name": "minhash_dedup", "bands": 20, "rows": 8}]})
    cfg = parse_config({"input": {"paths": ["x"]}, "steps": [
        {"name": "minhash_dedup", "bands": None, "rows": None, "threshold": 0.8}]})
    assert cfg.steps[0].params.band_rows()[0] * cfg.steps[0].params.band_rows()[1] <= 112


def test_small_input_and_shuffle_paths_give_the_same_decisions(ray_session, corpus, result, tmp_path, monkeypatch):
    """This corpus is small, so every dedup shuffle ran as one task (`shuffle_map`); forced through Ray Data's hash
    shuffles instead, every cluster, size and representative is the same."""
    import curate.operator as operator_mod

    d, _, _, _ = corpus
    rows, stats = result
    monkeypatch.setattr(operator_mod, "ONE_TASK_BYTES", -1)  # read on the driver, where the path is chosen
    rows2, stats2 = _run([str(d)], tmp_path / "out")
    cols = ("exact_dedup__cluster", "exact_dedup__exact__cluster_size", "exact_dedup__exact__duplicate",
            "minhash_dedup__cluster", "minhash_dedup__minhash__cluster_size", "minhash_dedup__minhash__duplicate")
    assert {i: [r[c] for c in cols] for i, r in rows2.items()} == {i: [r[c] for c in cols] for i, r in rows.items()}
    assert sum(r["minhash_dedup__minhash__duplicate"] == 1.0 for r in rows.values()) > 10
    stages = set(next(s for s in stats2["steps"] if s["step"] == "minhash_dedup")["stages"])
    assert {"band_buckets", "components", "representatives"} <= stages and "decide_one_task" not in stages


@pytest.mark.parametrize("path", ["one_task", "shuffles"])
def test_connected_components_against_union_find(ray_session, path, monkeypatch):
    import pyarrow as pa

    import curate.operator as operator_mod

    if path == "shuffles":
        monkeypatch.setattr(operator_mod, "ONE_TASK_BYTES", -1)
    import ray.data

    from operators.dedup.components import connected_components

    rng = np.random.default_rng(0)
    n = 3000
    u = rng.integers(0, n, 2500)
    v = rng.integers(0, n, 2500)
    # chains to force several rounds
    u = np.r_[u, np.arange(n, n + 400)]
    v = np.r_[v, np.arange(n + 1, n + 401)]
    parent = list(range(n + 401))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(u.tolist(), v.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    expect = {}
    comps = defaultdict(list)
    for x in set(u.tolist()) | set(v.tolist()):
        comps[find(x)].append(x)
    for members in comps.values():
        root = min(members)
        for m in members:
            if m != root:
                expect[m] = root
    edges = ray.data.from_arrow(pa.table({"u": u, "v": v})).repartition(8)
    got = {r["u"]: r["v"] for r in connected_components(edges, 4).take_all()}
    assert got == expect


@pytest.mark.parametrize("edges_uv", [[(5, 3)], []])
def test_connected_components_with_partitions_that_get_no_edge(ray_session, monkeypatch, edges_uv):
    """The shuffle path with more partitions than edges (a small run, or a corpus with few near duplicates): the
    partitions that get nothing must pass through empty (a failure found by the node-loss test once the default
    pipeline's filters left the sample with one near-duplicate pair at most)."""
    import pyarrow as pa
    import ray.data

    import curate.operator as operator_mod
    from operators.dedup.components import connected_components

    monkeypatch.setattr(operator_mod, "ONE_TASK_BYTES", -1)
    table = pa.table({"u": pa.array([a for a, _ in edges_uv], pa.int64()),
                      "v": pa.array([b for _, b in edges_uv], pa.int64())})
    got = {r["u"]: r["v"] for r in connected_components(ray.data.from_arrow(table), 4).take_all()}
    assert got == ({5: 3} if edges_uv else {})


def test_minhash_stats_info_in_stats_json(result):
    _, stats = result
    info = next(s for s in stats["steps"] if s["step"] == "minhash_dedup")["info"]
    assert info["bands"] == 14 and info["rows"] == 8 and info["clusters_by_size"]
    json.dumps(stats)


def test_verification_keeps_true_pairs_and_drops_loose_ones(ray_session, corpus, result, tmp_path):
    d, _, truth, _ = corpus
    rows, _ = result
    strict, _ = _run([str(d)], tmp_path / "out", verify_threshold=0.95)
    hi = [(v, b) for v, (b, j) in truth.items() if j >= 0.97]
    assert all(strict[v]["minhash_dedup__cluster"] == strict[b]["minhash_dedup__cluster"] for v, b in hi)
    lo = [(v, b) for v, (b, j) in truth.items() if j < 0.8]
    # pairs LSH joined below J=0.8 are cut by a 0.95 signature agreement check
    joined_before = sum(rows[v]["minhash_dedup__cluster"] == rows[b]["minhash_dedup__cluster"] for v, b in lo)
    joined_after = sum(strict[v]["minhash_dedup__cluster"] == strict[b]["minhash_dedup__cluster"] for v, b in lo)
    assert joined_before > 0 and joined_after == 0


def test_signer_slices_give_the_signatures_of_one_pass(monkeypatch):
    """The signer works through a block in slices of text (cache-sized passes); any slicing gives the same rows,
    word and character shingled documents alike, each equal to its document's own signature."""
    import pyarrow as pa

    from curate import schema
    from operators.dedup import minhash

    rng = random.Random(5)
    texts = [edit(t, 0.05, rng) for t in real_texts()[:30]]
    texts += ["我们在韩国留学的时候，有一天接到一个通知。学校带我们留学生去旅行。" * (k + 1) for k in range(5)]
    texts += ["", "!!!", "短い"]
    table = schema.conform(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts,
                                     schema.FILE: ["f"] * len(texts), schema.ORD: list(range(len(texts)))}))
    signer = minhash._Signer(minhash.MinHashParams(), {"f": 0})
    sigs = {}
    for limit in (1, 500, 1 << 30):
        monkeypatch.setattr(minhash, "SLICE_CHARS", limit)
        sigs[limit] = signer(table).column("sig").to_pylist()
    assert sigs[1] == sigs[500] == sigs[1 << 30]
    for text, sig in zip(texts, sigs[1]):
        norm = normalize(text)
        if norm:
            char = minhash.uses_char_shingles(norm)
            want = signature(token_hashes(norm, 5, 5, char), 112, 1)
            assert np.array_equal(np.array(sig, np.uint32), want)


def test_block_shingles_equal_the_per_document_definition():
    """The block path (code-point class table, one array per block) gives each document exactly the shingles of
    token_hashes(normalize(text), ...) with uses_char_shingles' choice, on awkward Unicode and on documents whose
    script changes around the 2,000-character sample that decides char or word shingles."""
    from operators.dedup import minhash

    rng = random.Random(11)
    texts = ["", "!!!", " \t\n", "a", "a b", "短い", "İstanbul ǰ ß ﬁ Ｄ２ ½ ＡＢＣ，中文。", "x\x00y\x00 z",
             "tabs\tand\u3000ideographic\u00a0nbsp\r\nlines\u2028sep", "😀 emoji 😀 text 𠀀𠀁 ext-b", "__ _a_ b_",
             "ไทย ภาษา ไทย", "한국어 텍스트 입니다 정말", "a-b c.d e,f g;h i:j", "Ωμέγα ΣΊΣΥΦΟΣ", "ǅ ǈ ǋ ﬀ ﬃ",
             "english words here " * 150 + "中文文本" * 800, "中文文本" * 600 + " english words here" * 300,
             "ok " * 1990 + "中文" * 100, "中" * 1500 + " a" * 400 + "文" * 700]
    pools = [(0x20, 0x7F), (0x80, 0x3000), (0x3000, 0xA000), (0xAC00, 0xD7A4), (0x10000, 0x20000)]
    for _ in range(200):
        texts.append("".join(" " if rng.random() < 0.15 else chr(rng.randrange(*rng.choice(pools)))
                             for _ in range(rng.randrange(0, 80))))
    texts += [edit(t, 0.05, rng) for t in real_texts()[:20]]
    rng.shuffle(texts)
    for shingle in ("auto", "word", "char"):
        for k in (1, 3, 5):
            hv, dv = minhash.block_shingles(texts, k, k + 1, shingle)
            assert np.all(np.diff(dv) >= 0)
            for i, t in enumerate(texts):
                norm = normalize(t)
                char = shingle == "char" or (shingle == "auto" and uses_char_shingles(norm))
                want = token_hashes(norm, k, k + 1, char) if norm else np.empty(0, np.uint32)
                assert np.array_equal(np.unique(hv[dv == i]), want), (shingle, k, t[:60])


def test_class_table_is_what_normalize_keeps():
    """Every code point: word characters are what `\\w` keeps (isalnum or _), spaces what str.split() splits on."""
    from operators.dedup import minhash

    cls = minhash._classes()
    chars = [chr(c) for c in range(1, 0x110000)]
    word = np.array([c.isalnum() or c == "_" for c in chars])
    space = np.array([c.isspace() for c in chars])
    assert np.array_equal(cls[1:] == minhash._WORD, word)
    assert np.array_equal(cls[1:] == minhash._SPACE, space)
    assert cls[0] == minhash._SEP


def test_nfkc_fast_path_is_exact():
    """common.nfkc (each character replaced by its own image, then checked) equals unicodedata's NFKC, on random
    text mixing compatibility characters, combining marks, Hangul jamo and full-width forms; and no code point at
    or above its table's limit is changed by NFKC on its own."""
    import unicodedata

    from operators.dedup import common

    rng = random.Random(2)
    pools = [(0x20, 0x300), (0x300, 0x370), (0x1100, 0x1200), (0x3000, 0x3400), (0xAC00, 0xAC40), (0xF900, 0x10000),
             (0x1D400, 0x1D800), (0x2F800, 0x2FA20), (0x30000, 0x30010)]
    for _ in range(5000):
        s = "".join(chr(rng.randrange(*rng.choice(pools))) for _ in range(rng.randrange(0, 30)))
        assert common.nfkc(s) == unicodedata.normalize("NFKC", s), s
    assert common.nfkc("中文，测试…ﬁ") == "中文,测试...fi"
    assert all(unicodedata.normalize("NFKC", chr(c)) == chr(c) for c in range(common._NFKC_LIMIT, 0x110000)
               if not 0xD800 <= c < 0xE000)


def test_shuffle_partitions_grow_with_the_input():
    from operators.dedup.common import PARTITION_BYTES, shuffle_partitions

    assert shuffle_partitions(1000, 4) == 4
    assert shuffle_partitions(10 * PARTITION_BYTES + 1, 4) == 11
