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

Then the trainers' formats (`shard.formats`): the same step once per format, each alone (dolma's layout, megatron,
mds, litdata, hf_parquet), the step's own seconds (its stages after `materialize_input`) and tokens/s, each as a
ratio to the dolma layout's; and datatrove 0.10.1's Megatron tokenizer step (`MegatronDocumentTokenizer`, HF
tokenizers with the tokenizer.json curate writes, so the same ids) over the same files with the same 2 workers,
against `curate run` of `shard` with `formats: [megatron]`, whole commands (reading included on both sides).

    python bench/shard.py [--docs 100000] [--tokenizer tiktoken:cl100k_base] [--no-formats]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
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
from _results import add_table  # noqa: E402
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
    ap.add_argument("--no-formats", action="store_true", help="skip the per-format and datatrove measurements")
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
    add_table(f"The shard step against bare Pool(2) encode loops ({a.tokenizer}, {len(texts):,} documents, "
              f"{mb:.0f} MB; the step's own seconds, reading excluded)",
              ["", "seconds", "tokens", "tokens/s", "curate vs this"],
              [["bare tokenizer batch encode", f"{batch_s:.1f}", f"{batch_tokens:,}", f"{batch_tokens / batch_s:,.0f}",
                f"{rate / (batch_tokens / batch_s):.2f}x"],
               ["bare encode_arrays (fastest path)", f"{arrays_s:.1f}", f"{arrays_tokens:,}",
                f"{arrays_tokens / arrays_s:,.0f}", f"{rate / (arrays_tokens / arrays_s):.2f}x"],
               ["curate shard step", f"{shard_s:.1f}", f"{tokens:,}", f"{rate:,.0f}", ""]])
    print("shard stages (wall s): " + ", ".join(f"{k}={v:.1f}" for k, v in step["stages"].items()))
    print(f"shards: {manifest['totals']['shards']}, sizes: {[s['tokens'] for s in manifest['shards']]}; "
          f"whole command {m['wall_s']:.1f} s, peak tree RSS {m['tree_mb']:.0f} MB")
    if not a.no_formats:
        formats(corpus, a.tokenizer, tmp, tmp / "out" / "tokens" / "tokenizer.json",
                manifest["eos_token"], manifest["totals"]["tokens"])
    shutil.rmtree(tmp, ignore_errors=True)


def _shard_run(corpus: Path, tokenizer: str, tmp: Path, fmts: list[str]) -> tuple[float, float, dict]:
    """`curate run` of shard alone with these formats: (the step's own seconds, the whole command's, stats)."""
    name = "-".join(fmts)
    cfg = {"input": {"paths": [str(corpus)], "format": "jsonl", "source": "bench"}, "ray": {"num_cpus": 2},
           "steps": [{"name": "shard", "tokenizer": tokenizer, "tokens_per_shard": 10_000_000,
                      "max_doc_tokens": 2048, "writers": 4, "formats": fmts}]}
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp / f"out-{name}"
    m = measure([sys.executable, "-m", "curate.cli", "run", str(tmp / f"{name}.yaml"), "-o", str(out), "-q"])
    stats = json.loads((out / "stats.json").read_text())
    step = next(s for s in stats["steps"] if s["step"] == "shard")
    own = sum(v for k, v in step["stages"].items() if k != "materialize_input")
    shutil.rmtree(out, ignore_errors=True)
    return own, m["wall_s"], step["stages"]


def formats(corpus: Path, tokenizer: str, tmp: Path, tokenizer_json: Path, eos: str, tokens: int) -> None:
    from parity import datatrove_python

    print(f"\nformats: the shard step with each format alone ({tokens:,} tokens)")
    print(f"{'format':<14}{'step s':>9}{'write s':>9}{'tokens/s':>12}{'vs dolma':>10}")
    base, rows = None, []
    for f in ("dolma", "megatron", "mds", "litdata", "hf_parquet"):
        own, _, stages = _shard_run(corpus, tokenizer, tmp, [f])
        base = base or own
        print(f"{f:<14}{own:>9.1f}{stages.get('write_shards', 0):>9.1f}{tokens / own:>12,.0f}{own / base:>9.2f}x")
        rows.append([f, f"{own:.1f}", f"{stages.get('write_shards', 0):.1f}", f"{tokens / own:,.0f}",
                     f"{own / base:.2f}x"])
    add_table(f"Each format alone: the shard step's own seconds (tokenize, assign, write) over {tokens:,} tokens; "
              "target <= 1.2x the dolma layout's", ["format", "step s", "of it writing s", "tokens/s", "vs dolma"],
              rows)
    own, curate_wall, _ = _shard_run(corpus, tokenizer, tmp, ["megatron"])
    shutil.copy(tokenizer_json, tmp / "tokenizer.json")
    r = subprocess.run([str(datatrove_python()), str(REPO / "bench" / "shard_datatrove.py"), str(corpus),
                        str(tmp / "dt"), str(tmp / "tokenizer.json"), eos, "2"],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        print(f"datatrove failed: {r.stderr[-2000:]}")
        return
    dt = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\nMegatron .bin/.idx, whole commands, 2 workers each:\n"
          f"  datatrove MegatronDocumentTokenizer  {dt['wall_s']:>7.1f} s  {dt['tokens']:>12,} tokens  "
          f"{dt['tokens'] / dt['wall_s']:>10,.0f} tokens/s\n"
          f"  curate shard formats: [megatron]     {curate_wall:>7.1f} s  {tokens:>12,} tokens  "
          f"{tokens / curate_wall:>10,.0f} tokens/s\n"
          f"  curate / datatrove (tokens/s): {(tokens / curate_wall) / (dt['tokens'] / dt['wall_s']):.2f}x")
    add_table("Megatron .bin/.idx from the same jsonl.zst files, whole commands (reading included), 2 workers each; "
              "datatrove 0.10.1's MegatronDocumentTokenizer uses HF tokenizers with the tokenizer.json curate wrote "
              "(the same ids)", ["", "seconds", "tokens", "tokens/s"],
              [["datatrove MegatronDocumentTokenizer", f"{dt['wall_s']:.1f}", f"{dt['tokens']:,}",
                f"{dt['tokens'] / dt['wall_s']:,.0f}"],
               ["curate shard, formats: [megatron]", f"{curate_wall:.1f}", f"{tokens:,}",
                f"{tokens / curate_wall:,.0f}"]])


if __name__ == "__main__":
    from _results import recording

    with recording("shard", "Sharding",
                   "tokenize and shard against a bare tokenizer loop"):
        rc = main()
    raise SystemExit(rc)
