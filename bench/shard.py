"""Shard step throughput vs bare encode loops of the same tokenizer over the same texts, one run.

Corpus: the dedup benchmark's documents (bench/dedup.py builds them: Wikipedia sentences, en/fr/es). curate runs
`shard` alone on them (tokenize + split long documents, assignment, write documents, attributes and the
dolma-tokens output, manifest, metrics). Two baselines, both `multiprocessing.Pool(2)` over the same texts doing
nothing else, tokenizer loaded before timing:

* the tokenizer's batch-encode call (tiktoken `encode_ordinary_batch`, HF `encode_batch`): the issue's baseline;
* the fastest bare path we know, `Tokenizer.encode_arrays` (tiktoken `encode_to_numpy` per text): what the step
  itself calls, so this ratio is the step's whole overhead beyond tokenizing.

Both use 2 workers like the step; reading the input is excluded from all (curate's `materialize_input` stage is
reported apart).

    python bench/shard.py [--docs 100000] [--tokenizer tiktoken:cl100k_base]
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def _encode(args: tuple[str, str, list[str]]) -> int:
    from operators.shard.tokenizers import load

    spec, api, texts = args
    tok = load(spec)
    return sum(len(x) for x in (tok.encode_batch(texts) if api == "batch" else tok.encode_arrays(texts)))


def bare(texts: list[str], spec: str, api: str, workers: int = 2) -> tuple[float, int]:
    chunks = [texts[i:i + 1000] for i in range(0, len(texts), 1000)]
    with get_context("fork").Pool(workers) as pool:
        pool.map(_encode, [(spec, api, ["warm up"])] * workers)  # tokenizer loaded before timing
        t = time.perf_counter()
        n = sum(pool.map(_encode, [(spec, api, c) for c in chunks]))
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

    batch_s, batch_tokens = bare(texts, a.tokenizer, "batch")
    arrays_s, arrays_tokens = bare(texts, a.tokenizer, "arrays")
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
    rate = tokens / shard_s
    print(f"\n{'':<44}{'seconds':>9}{'tokens':>12}{'tokens/s':>12}")
    print(f"{'bare Pool(2) tokenizer batch encode':<44}{batch_s:>9.1f}{batch_tokens:>12}"
          f"{batch_tokens / batch_s:>12.0f}")
    print(f"{'bare Pool(2) encode_arrays (fastest path)':<44}{arrays_s:>9.1f}{arrays_tokens:>12}"
          f"{arrays_tokens / arrays_s:>12.0f}")
    print(f"{'curate shard step':<44}{shard_s:>9.1f}{tokens:>12}{rate:>12.0f}")
    print(f"\nratio curate / tokenizer batch encode: {rate / (batch_tokens / batch_s):.2f}x  (target >= 0.8x)")
    print(f"ratio curate / fastest bare path:      {rate / (arrays_tokens / arrays_s):.2f}x")
    print("shard stages (wall s): " + ", ".join(f"{k}={v:.1f}" for k, v in step["stages"].items()))
    print(f"shards: {manifest['totals']['shards']}, sizes: {[s['tokens'] for s in manifest['shards']]}; "
          f"whole command {m['wall_s']:.1f} s, peak tree RSS {m['tree_mb']:.0f} MB")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from _results import recording

    with recording("shard", "Sharding",
                   "tokenize and shard against a bare tokenizer loop"):
        rc = main()
    raise SystemExit(rc)
