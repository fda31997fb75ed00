"""`curate train segmenter`: the segment stage's sub-command (entry point group curate.commands)."""

from __future__ import annotations

import argparse
import json


def train_segmenter(t: argparse.ArgumentParser) -> None:
    """rebuild the bundled SaT-style sentence segmenter (torch, CPU)"""
    t.add_argument("--data", required=True, help="folder with train/<lang>.jsonl (shared/data/sentences)")
    t.add_argument("--out", help="model .npz to write (default: the bundled model's path)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int)
    t.add_argument("--exclude", help="comma-separated languages to leave out (the leave-languages-out evaluation)")
    t.set_defaults(fn=_cmd_train_segmenter)


def _cmd_train_segmenter(args: argparse.Namespace) -> int:
    from operators.segment.model import bundled_model_path
    from operators.segment.train import TrainConfig, train

    overrides = {"epochs": args.epochs, "seed": args.seed, "threads": args.threads,
                 "exclude": [x for x in (args.exclude or "").split(",") if x] or None}
    cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    record = train(args.data, args.out or bundled_model_path(), cfg)
    print(json.dumps({k: record[k] for k in ("model", "sha256", "bytes", "thresholds", "heldout", "train_seconds")}))
    return 0
