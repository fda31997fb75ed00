"""A synthetic curate output for the dashboard benchmark: stats.json, progress.jsonl and stats/docs/*.parquet.

Shaped like the default pipeline's real output (bench/dashboard.py says why each choice): one parquet per part of
`rows_per_file` rows (input.docs_per_block, 1000 by default, so a 10M-document run has 10,000 files), the same
bookkeeping columns the writer writes, 20 langid probabilities and 24 quality signals, fates and reasons in the
sample run's proportions, languages Zipf-distributed, characters log-normal. Deterministic (seeded).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LANGS = ["en", "de", "fr", "es", "ru", "zh", "ja", "it", "pt", "nl", "pl", "tr", "vi", "ar", "ko", "id", "fa",
         "sv", "cs", "uk"]
SIGNALS = ["word_count", "mean_word_length", "symbol_to_word_ratio", "frac_lines_bullet", "frac_lines_ellipsis",
           "frac_words_alpha", "stopword_count", "dup_line_frac", "dup_para_frac", "dup_line_char_frac",
           "dup_para_char_frac", "top_2gram_char_frac", "top_3gram_char_frac", "top_4gram_char_frac",
           "dup_5gram_char_frac", "dup_6gram_char_frac", "dup_7gram_char_frac", "dup_8gram_char_frac",
           "dup_9gram_char_frac", "dup_10gram_char_frac", "c4_lines_no_terminal_punct", "curly_bracket",
           "lorem_ipsum", "frac_lines_end_ellipsis"]
# (step, fate, reason, share): the sample run's proportions, rounded
FATES = [(None, "kept", None, 0.43), ("read", "drop", "http_status", 0.08), ("read", "error", "truncated_record", 0.01),
         ("extract", "drop", "not_html", 0.08), ("extract", "drop", "binary_body", 0.035),
         ("filter", "drop", "exact_duplicate", 0.18), ("filter", "drop", "near_duplicate", 0.06),
         ("filter", "drop", "too_few_words", 0.045), ("filter", "drop", "gopher_repetition", 0.04),
         ("filter", "drop", "gopher_symbols", 0.02), ("filter", "drop", "low_langid_confidence", 0.05)]


def _part(seed: int, n: int, file_no: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    shares = np.array([f[3] for f in FATES])
    pick = rng.choice(len(FATES), n, p=shares / shares.sum())
    lang_p = 1.0 / np.arange(1, len(LANGS) + 1) ** 1.3
    lang = rng.choice(len(LANGS), n, p=lang_p / lang_p.sum())
    ids = [f"{file_no:06d}-{i:06d}" for i in range(n)]
    cols: dict[str, pa.Array] = {
        "id": pa.array(ids),
        "file": pa.array([f"s3://crawl/CC-MAIN-2024-10/segment-{file_no // 100:05d}.warc.gz"] * n),
        "ord": pa.array(np.arange(n, dtype=np.int64) + (file_no % 100) * n),
        "url": pa.array([f"https://site{int(x)}.example/{i}" for i, x in enumerate(rng.integers(0, 10**6, n))]),
        "language": pa.array([LANGS[i] for i in lang]),
        "fate": pa.array([FATES[i][1] for i in pick]),
        "born": pa.nulls(n, pa.string()),
        "step": pa.array([FATES[i][0] for i in pick], pa.string()),
        "reason": pa.array([FATES[i][2] for i in pick], pa.string()),
        "detail": pa.nulls(n, pa.string()),
        "chars": pa.array(np.minimum(rng.lognormal(7.5, 1.2, n), 10**6).astype(np.int32)),
        "exact_dedup__exact__cluster_size": pa.array(rng.geometric(0.7, n).astype(np.int64)),
        "exact_dedup__exact__duplicate": pa.array((pick == 5).astype(np.float64)),
        "langid__fasttext__confidence": pa.array(rng.beta(5, 1.2, n).round(4)),
    }
    for code in LANGS:
        cols[f"langid__fasttext__{code}"] = pa.array(np.where(lang == LANGS.index(code), rng.beta(5, 1.2, n), 0.0)
                                                     .round(4))
    cols["minhash_dedup__minhash__cluster_size"] = pa.array(rng.geometric(0.8, n).astype(np.int64))
    cols["minhash_dedup__minhash__duplicate"] = pa.array((pick == 6).astype(np.float64))
    cols["preselect__fasttext__score"] = pa.array(rng.beta(2, 5, n).round(6))
    for s in SIGNALS:
        cols[f"quality_signals__heuristics__{s}"] = pa.array(rng.gamma(2.0, 0.1, n).round(6))
    cols["exact_dedup__cluster"] = pa.array(ids)
    cols["minhash_dedup__cluster"] = pa.array(ids)
    return pa.table(cols)


def make_run(root: Path, rows: int, rows_per_file: int = 1000) -> Path:
    """Write the run under ``root`` (skipped when a finished one is there); returns root."""
    done = root / "_synth_done"
    if done.exists():
        return root
    docs = root / "stats" / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    n_files = -(-rows // rows_per_file)

    def write(k: int) -> dict[str, int]:
        n = min(rows_per_file, rows - k * rows_per_file)
        t = _part(k, n, k)
        pq.write_table(t, docs / f"segment-{k // 100:05d}-{(k % 100) * rows_per_file:06d}.parquet",
                       compression="zstd")
        fates = t.group_by(["step", "fate", "reason"]).aggregate([([], "count_all")]).to_pylist()
        return {f"{r['step']}|{r['fate']}|{r['reason']}": r["count_all"] for r in fates}

    counts: dict[str, int] = {}
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for c in pool.map(write, range(n_files)):
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
    steps = ["read", "extract", "langid", "quality_signals", "preselect", "exact_dedup", "minhash_dedup", "filter",
             "segment", "shard", "write"]
    alive, rows_out = rows, []
    for s in steps:
        dropped = {k.split("|")[2]: v for k, v in counts.items() if k.startswith(f"{s}|drop|")}
        errors = {k.split("|")[2]: v for k, v in counts.items() if k.startswith(f"{s}|error|")}
        out = alive - sum(dropped.values()) - sum(errors.values())
        rows_out.append({"step": s, "in": alive, "out": out, "dropped": dropped, "errors": errors,
                         "seconds": 1.0, "batches": n_files, "rows_processed": alive})
        alive = out
    kept = alive
    stats = {"status": "done", "started": "2026-01-01T00:00:00Z", "updated": "2026-01-01T01:00:00Z",
             "elapsed_s": 3600.0, "config": {"path": "synthetic.yaml", "steps": []}, "cluster": {"cpus": 64},
             "inputs": {"files": n_files // 100 + 1, "files_read": n_files // 100 + 1, "skipped_files": [],
                        "records_skipped": {}},
             "steps": rows_out, "resume": {"resumed": False, "parts_reused": 0, "checkpoints_reused": []},
             "totals": {"documents_in": rows, "documents_created": 0, "documents_out": kept,
                        "dropped": sum(v for k, v in counts.items() if "|drop|" in k),
                        "errors": sum(v for k, v in counts.items() if "|error|" in k), "balanced": True,
                        "characters_out": 0, "parts": n_files, "docs_per_s": rows / 3600}}
    (root / "stats.json").write_text(json.dumps(stats, indent=1))
    with open(root / "stats" / "progress.jsonl", "w") as f:
        for i in range(3600):  # a line a second, as the driver writes them
            f.write(json.dumps({"t": "2026-01-01T00:00:00Z", "elapsed_s": float(i), "status": "running",
                                "documents_in": rows * i // 3600, "documents_out": kept * i // 3600,
                                "rows_processed": {s: rows * i // 3600 for s in steps}}) + "\n")
    done.write_text("ok\n")
    return root
