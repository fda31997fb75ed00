"""Does PreSelect's selection help a model? The same small LM trained on the scorer's top share of a pool vs a
random share with the same number of tokens, several seeds; benchmark accuracy and held-out loss of both.

Pool: a corpus built like the scorer's (scorers/preselect/corpus.py: web pages of a bench corpus with another seed
than the scorer's, their boilerplate, Wikipedia summaries en/fr/es of articles the benchmarks and the small models
do not use), deduplicated by the pipeline. Selection: (a) the top ``--share`` of documents by the bundled
scorer's `preselect__fasttext__score` (what `select` keeps), (b) random documents (by seed) until they hold as many
of the LM's tokens as (a). LM: the `wiki-en-2l` architecture of the model family (2 layers, 128 wide, its own
4,096-token BPE trained on the selected text), ``--steps`` steps. Evaluation: the two offline benchmarks (wiki
cloze, word order; chance 0.25 and 0.5) and bits per character on held-out English Wikipedia summaries.

    python bench/selection.py [--pages 800] [--wiki 800] [--share 0.3] [--seeds 3] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from make_corpus import corpus as bench_corpus  # noqa: E402

from scorers.preselect import train as tp  # noqa: E402
from scorers.preselect.corpus import build  # noqa: E402


def pool_texts(pages: int, wiki: int) -> list[str]:
    docs = build(REPO / "bench" / ".cache" / f"selection-pool-{pages}-{wiki}", [str(bench_corpus(pages, seed=99))],
                 wiki=wiki, seed=99, log=lambda *_: None)
    return tp.read_corpus([str(docs)], None, 2000)


def scores(texts: list[str]) -> list[float]:
    from scorers.preselect.operator import load_scorer, positive_probability, prepare

    model = load_scorer(None)
    return list(positive_probability(model, [prepare(t) for t in texts]))


def heldout_texts(n: int = 300) -> list[str]:
    en = tp.wiki_texts("en")
    return [t for _, t in en[-n:]]  # the last articles by title: no pool, benchmark or model uses them


def evaluate(model_dir: str, cloze: list[dict], order: list[dict], held: list[str]) -> dict:
    lm = tp.LossModel(model_dir)
    import numpy as np

    return {"cloze": tp.measure_benchmark(lm, cloze), "word_order": tp.measure_word_order(lm, order),
            "heldout_bpc": float(np.nanmean(lm.bits_per_char(held)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=800)
    ap.add_argument("--wiki", type=int, default=800)
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400)
    a = ap.parse_args()
    t0 = time.time()
    held = heldout_texts()
    cloze, pairs = tp.cloze_items(150), tp.word_order_items(300)
    # no evaluation text inside a training document (pages hold random Wikipedia summaries)
    marks = [h[:80] for h in held] + [it["context"][:80] for it in cloze] + [it["good"][:80] for it in pairs]
    pool = pool_texts(a.pages, a.wiki)
    texts = [t for t in pool if not any(m in t for m in marks)]
    print(f"pool: {len(pool)} documents, {len(pool) - len(texts)} holding an evaluation text left out", flush=True)
    s = scores(texts)
    order = sorted(range(len(texts)), key=lambda i: (-s[i], i))
    top = [texts[i] for i in order[: int(len(texts) * a.share)]]
    budget = sum(len(t) for t in top)
    print(f"pool {len(texts)} documents; top {a.share:.0%}: {len(top)} documents, {budget} characters; score "
          f"quantiles {[round(q, 3) for q in statistics.quantiles(s, n=4)]} ({time.time() - t0:.0f} s)", flush=True)
    rows: dict[str, list[dict]] = {"top": [], "random": []}
    work = REPO / "bench" / ".cache" / "selection-models"
    for seed in range(a.seeds):
        rng = random.Random(seed)
        shuffled = texts[:]
        rng.shuffle(shuffled)
        rand, n = [], 0
        for t in shuffled:  # same characters as the top share (the LMs' tokens follow characters)
            if n >= budget:
                break
            rand.append(t)
            n += len(t)
        for name, data in (("top", top), ("random", rand)):
            target = work / f"{name}-{a.share}-{a.steps}-{seed}"
            if not (target / "config.json").exists():
                tp.train_tinylm(target, data, seed=seed, steps=a.steps, log=lambda *_: None)
            r = evaluate(str(target), cloze, pairs, held)
            rows[name].append(r)
            print(f"seed {seed} {name:<6} cloze {r['cloze']:.3f}  word order {r['word_order']:.3f}  held-out "
                  f"{r['heldout_bpc']:.4f} bits/char  ({time.time() - t0:.0f} s)", flush=True)
    print(f"\n| selection ({a.seeds} seeds, {a.steps} steps) | cloze accuracy | word-order accuracy | held-out bits/char |"
          "\n|---|---|---|---|")
    for name, rs in rows.items():
        cells = []
        for k in ("cloze", "word_order", "heldout_bpc"):
            v = [r[k] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.4f} ± {sd:.4f}")
        label = f"PreSelect top {a.share:.0%}" if name == "top" else "random, same characters"
        print(f"| {label} | " + " | ".join(cells) + " |")
    out = REPO / "bench" / "results" / "selection.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "pool": len(texts), "rows": rows}, indent=1))


if __name__ == "__main__":
    from _results import recording

    with recording("selection", "PreSelect selection ablation",
                   "PreSelect top-fraction selection against random selection: held-out loss of small models trained on each"):
        rc = main()
    raise SystemExit(rc)
