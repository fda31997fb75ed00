"""A clustered, multilingual near-duplicate corpus for the dedup benchmark, and the single-process baseline.

Text: ../shared/data/sentences/train/<lang>.jsonl (the project's sentence corpus, train split; its SOURCES.md gives
sources and licences), nine languages, two without spaces (zh, ja). A base document is random sentences of one
language up to a length drawn around ``doc_chars``. Most documents belong to clusters of 10-99 variants of one
base (sizes log-uniform), the rest are singletons. A variant applies one or two edit kinds at one of four rates
(1, 3, 5, 10% of its tokens; a token is a word, or a character in zh/ja): substitute (random tokens of the same
language), delete (a contiguous span), insert (a span of another document's text), swap (two sentences trade
places) and boilerplate (a header and footer shared by many pages). Deterministic by seed; truth = cluster per id.

The baseline is what a user writes first: datasketch ``MinHash.bulk`` over the same shingles (word 5-grams, char
5-grams for no-space text), ``MinHashLSH(params=(14, 8))`` queried document by document, union-find. One process.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTENCES = REPO.parent / "shared" / "data" / "sentences" / "train"
LANGS = {"en": 0.3, "de": 0.1, "fr": 0.1, "es": 0.1, "ru": 0.1, "pl": 0.05, "tr": 0.05, "zh": 0.12, "ja": 0.08}
NO_SPACE = {"zh", "ja"}
RATES = (0.01, 0.03, 0.05, 0.10)
KINDS = ("substitute", "delete", "insert", "swap", "boilerplate")
BOILER = [("Home | News | Sport | Contact | Login", "© 2024 All rights reserved. Privacy policy. Cookie settings."),
          ("Skip to content. Menu. Search this site", "Share this: Facebook Twitter Email. Related posts"),
          ("首页 | 新闻 | 联系我们", "版权所有 隐私政策"), ("ホーム | お問い合わせ", "著作権 プライバシーポリシー")]


def _sentences(lang: str, root: Path) -> list[str]:
    out = []
    with open(root / f"{lang}.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            split = re.split(r"(?<=[。！？])" if lang in NO_SPACE else r"(?<=[.!?])\s+", text)
            out += [s.strip() for s in split if len(s.strip()) > (8 if lang in NO_SPACE else 30)]
    return out


def _tokens(text: str, lang: str) -> list[str]:
    return list(text) if lang in NO_SPACE else text.split(" ")


def _join(tokens: list[str], lang: str) -> str:
    return "".join(tokens) if lang in NO_SPACE else " ".join(tokens)


def _variant(base: list[str], lang: str, pool: list[str], rng: random.Random) -> str:
    """base: the base document's sentences."""
    sents = list(base)
    kinds = rng.sample(KINDS, rng.choice((1, 1, 2)))
    rate = rng.choice(RATES)
    header = footer = ""
    if "swap" in kinds and len(sents) > 2:
        for _ in range(max(1, int(rate * len(sents) * 3))):
            i, j = rng.sample(range(len(sents)), 2)
            sents[i], sents[j] = sents[j], sents[i]
    if "boilerplate" in kinds:
        header, footer = rng.choice(BOILER)
    tok = _tokens(("" if lang in NO_SPACE else " ").join(sents), lang)
    n = max(1, int(rate * len(tok)))
    if "substitute" in kinds:
        for i in rng.sample(range(len(tok)), min(n, len(tok))):
            other = _tokens(rng.choice(pool), lang)
            tok[i] = rng.choice(other) if other else tok[i]
    if "delete" in kinds and len(tok) > n:
        i = rng.randrange(len(tok) - n)
        del tok[i:i + n]
    if "insert" in kinds:
        extra = _tokens(rng.choice(pool), lang)[:n]
        i = rng.randrange(len(tok) + 1)
        tok[i:i] = extra
    body = _join(tok, lang)
    return "\n".join(x for x in (header, body, footer) if x)


def build(out: Path, n_docs: int, doc_chars: int = 4000, seed: int = 11, root: Path = SENTENCES,
          per_file: int = 5000) -> Path:
    """Write ``out/part-*.jsonl.zst`` and ``out/truth.json`` (id -> cluster); skipped when already there."""
    if (out / "truth.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pools = {lang: _sentences(lang, root) for lang in LANGS}
    langs, weights = list(LANGS), list(LANGS.values())
    docs, truth, c = [], {}, 0
    while len(docs) < n_docs:
        lang = rng.choices(langs, weights)[0]
        pool = pools[lang]
        target = int(doc_chars * math.exp(rng.gauss(0, 0.4)))
        base, size = [], 0
        while size < target:
            s = rng.choice(pool)
            base.append(s)
            size += len(s) + 1
        cluster = f"c{c:07d}"
        c += 1
        k = 1 if rng.random() < 0.1 else int(math.exp(rng.uniform(math.log(10), math.log(100))))
        k = min(k, n_docs - len(docs))
        texts = [("" if lang in NO_SPACE else " ").join(base)] + [_variant(base, lang, pool, rng) for _ in range(k - 1)]
        for t in texts:
            did = f"d{len(docs):08d}"
            docs.append({"id": did, "text": t})
            truth[did] = cluster
    rng.shuffle(docs)
    return write_parts(out, docs, truth, per_file)


def write_parts(out: Path, docs: list[dict], truth: dict, per_file: int = 5000) -> Path:
    """A bench corpus on disk: part-NNNN.jsonl.zst of ``per_file`` documents each, and truth.json."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3)
    for f in range(0, len(docs), per_file):
        lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs[f:f + per_file])
        (out / f"part-{f // per_file:04d}.jsonl.zst").write_bytes(cctx.compress(lines.encode()))
    (out / "truth.json").write_text(json.dumps(truth))
    return out


def pair_quality(pred: dict[str, str], truth: dict[str, str]) -> dict[str, float]:
    """Pairwise precision and recall of predicted clusters against the true ones (pairs of documents put in one
    cluster), over the documents both know."""
    from collections import Counter

    ids = [i for i in truth if i in pred]
    both = Counter((pred[i], truth[i]) for i in ids)
    p = Counter(pred[i] for i in ids)
    t = Counter(truth[i] for i in ids)
    pairs = lambda n: n * (n - 1) // 2  # noqa: E731
    tp = sum(pairs(n) for n in both.values())
    pp, tt = sum(pairs(n) for n in p.values()), sum(pairs(n) for n in t.values())
    return {"precision": tp / pp if pp else 1.0, "recall": tp / tt if tt else 1.0,
            "clusters_true": sum(1 for n in t.values() if n > 1), "clusters_found": sum(1 for n in p.values() if n > 1)}


BASELINE = r'''
import json, re, sys, time, unicodedata
import numpy as np
import zstandard
from datasketch import MinHash, MinHashLSH

t0 = time.perf_counter()
files = sys.argv[1:]
ids, texts = [], []
for f in files:
    for line in zstandard.ZstdDecompressor().stream_reader(open(f, "rb")).read().decode().splitlines():
        d = json.loads(line)
        ids.append(d["id"]); texts.append(d["text"])
t_read = time.perf_counter() - t0
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
PUNCT = re.compile(r"[^\w\s]")

def shingles(text):
    norm = " ".join(PUNCT.sub(" ", unicodedata.normalize("NFKC", text).lower()).split())
    if len(CJK.findall(norm)) > 0.3 * max(1, len(norm.replace(" ", ""))):
        s = norm.replace(" ", "")
        return {s[i:i + 5].encode() for i in range(max(1, len(s) - 4))}
    w = norm.split()
    return {" ".join(w[i:i + 5]).encode() for i in range(max(1, len(w) - 4))}

t = time.perf_counter()
mhs = MinHash.bulk([list(shingles(x)) for x in texts], num_perm=112, seed=1)
t_sig = time.perf_counter() - t
t = time.perf_counter()
lsh = MinHashLSH(num_perm=112, params=(14, 8))
parent = list(range(len(ids)))
def find(a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]; a = parent[a]
    return a
for i, m in enumerate(mhs):
    for j in lsh.query(m):
        ra, rb = find(i), find(j)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    lsh.insert(i, m)
t_lsh = time.perf_counter() - t
cluster = {ids[i]: ids[find(i)] for i in range(len(ids))}
print(json.dumps({"read_s": t_read, "signatures_s": t_sig, "lsh_union_find_s": t_lsh, "cluster": cluster}))
'''
