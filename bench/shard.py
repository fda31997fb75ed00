"""Shard step throughput vs a bare batch-encode loop of the same tokenizer over the same texts, one run.

Corpus: the dedup benchmark's documents (bench/dedup.py builds them: Wikipedia sentences, en/fr/es). curate runs
`shard` alone on them (tokenize + split long documents, global sort and assignment, shuffle, write documents,
attributes and the dolma-tokens output, metrics); the baseline is `multiprocessing.Pool(2)` calling the same
tokenizer's batch encode on the same texts and nothing else. Both use 2 workers; reading the input is excluded
from both (curate's `materialize_input` stage is reported apart).

    python bench/shard.py [--docs 100000] [--tokenizer tiktoken:cl100k_base]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from _measure import measure  # noqa: E402
from dedup import build_corpus, load_docs  # noqa: E402


def _encode(args: tuple[str, list[str]]) -> int:
    from curate.tokenizers import load

    spec, texts = args
    return sum(len(x) for x in load(spec).encode_arrays(texts))


def bare(texts: list[str], spec: str, workers: int = 2) -> tuple[float, int]:
    chunks = [texts[i:i + 1000] for i in range(0, len(texts), 1000)]
    with get_context("fork").Pool(workers) as pool:
        pool.map(_encode, [(spec, ["warm up"])] * workers)  # tokenizer loaded before timing, as in curate
        t = time.perf_counter()
        n = sum(pool.map(_encode, [(spec, c) for c in chunks]))
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--tokenizer", default="tiktoken:cl100k_base")
    a = ap.parse_args()
    corpus = build_corpus(a.docs)
    texts = [d["text"] for d in load_docs(corpus)]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {len(texts)} documents, {mb:.0f} MB ({corpus}); tokenizer {a.tokenizer}")

    bare_s, bare_tokens = bare(texts, a.tokenizer)
    tmp = Path(tempfile.mkdtemp(prefix="curate-shard-bench-"))
    cfg = {"input": {"paths": [str(corpus)], "format": "jsonl", "source": "bench"}, "ray": {"num_cpus": 2},
           "steps": [{"name": "shard", "tokenizer": a.tokenizer, "tokens_per_shard": 10_000_000,
                      "max_doc_tokens": 2048, "writers": 4}]}
    (tmp / "shard.yaml").write_text(yaml.safe_dump(cfg))
    m = measure([sys.executable, "-m", "curate.cli", "run", str(tmp / "shard.yaml"), "-o", str(tmp / "out"), "-q"])
    stats = json.loads((tmp / "out" / "stats.json").read_text())
    step = next(s for s in stats["steps"] if s["step"] == "shard")
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    shard_s = sum(v for k, v in step["stages"].items() if k != "materialize_input")
    tokens = manifest["totals"]["tokens"]
    print(f"\n{'':<34}{'seconds':>9}{'tokens':>12}{'tokens/s':>12}")
    print(f"{'bare Pool(2) batch encode':<34}{bare_s:>9.1f}{bare_tokens:>12}{bare_tokens / bare_s:>12.0f}")
    print(f"{'curate shard step':<34}{shard_s:>9.1f}{tokens:>12}{tokens / shard_s:>12.0f}")
    print(f"\nratio curate/bare (tokens/s): {(tokens / shard_s) / (bare_tokens / bare_s):.2f}x  (target >= 0.8x)")
    print("shard stages (wall s): " + ", ".join(f"{k}={v:.1f}" for k, v in step["stages"].items()))
    print(f"shards: {manifest['totals']['shards']}, sizes: {[s['tokens'] for s in manifest['shards']]}; "
          f"whole command {m['wall_s']:.1f} s, peak tree RSS {m['tree_mb']:.0f} MB")


if __name__ == "__main__":
    main()
