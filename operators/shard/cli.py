"""`curate tokstats`: the shard stage's sub-command (entry point group curate.commands)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def tokstats(p: argparse.ArgumentParser) -> None:
    """tokenizer metrics per language over a run's documents"""
    p.add_argument("output")
    p.add_argument("--tokenizer", action="append", required=True,
                   help="tiktoken:<encoding> or hf:<tokenizer.json>; repeat to compare")
    p.set_defaults(fn=_cmd_tokstats)


def _cmd_tokstats(args: argparse.Namespace) -> int:
    """Tokenizer metrics per language over a run's documents, for one or more tokenizers side by side."""
    from operators.shard.tokenizers import load
    from operators.shard.tokens import TokStats
    from curate.writer import read_jsonl

    root = Path(args.output)
    files = sorted((root / "documents").rglob("*.jsonl.*"))
    if not files:
        print(f"{root}/documents: no document files", file=sys.stderr)
        return 2
    docs = [d for path in files for d in read_jsonl(path)]
    langs = {d["id"]: (d.get("metadata") or {}).get("language") for d in docs}  # langid writes metadata.language
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


def export(p: argparse.ArgumentParser) -> None:
    """write a finished run's tokens in other trainers' formats, without running the pipeline again"""
    from operators.shard.formats import FORMATS

    p.add_argument("output", metavar="OUT", help="a finished run with `shard` (local path or s3://, gs:// URL)")
    p.add_argument("--format", action="append", required=True, choices=[f for f in FORMATS if f != "dolma"],
                   dest="formats", help="a format to write; repeat for several")
    p.add_argument("--to", help="where to write them (default: OUT itself, beside the run's own files)")
    p.set_defaults(fn=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    """Read the run's dolma token parts, documents and per-document stats; write the formats' files (the same
    bytes `shard` writes for them during a run) and their manifest entry."""
    from operators.shard.exporter import ExportError, export_run

    try:
        written = export_run(args.output, args.formats, args.to)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(written)} files written under {args.to or args.output}: " + ", ".join(args.formats))
    return 0
