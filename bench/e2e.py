"""End-to-end throughput: `curate run` vs a bare multiprocessing loop doing the same work, in one run; and the whole
default pipeline.yaml (every step: dedup, segment, shard) on the same corpus, with each step's parallelism.

Both sides read the same WARC corpus (bench/make_corpus.py) and do the same calls: warcio records -> the same
charset decoding -> the extract step's engine function with pipeline.yaml's settings (operators/extract/engines.py)
-> fastText lid.176 -> Gopher/C4 signals -> the
default pipeline's filter rules -> gzip JSONL (the default output.compression, through curate's own compressor,
ISA-L, on both sides). The bare loop has no Ray, no
sandbox, no attribute files, no per-document stats: the ratio is the price of the framework. The default pipeline's run shows what users get
(only `tokens_per_shard` is raised from the sample's 20,000 so a 20M-token corpus makes a few shards). Peak RSS is the sum over the whole process tree
(driver, Ray's own processes, workers, sandbox children), sampled every 0.5 s. The default pipeline runs twice: as
it is (extract `engine: cascade`) and with `engine: trafilatura`, the exact extractor it used before, to show what
the engine is worth to the whole pipeline.

    python bench/e2e.py                # 20,000 pages, 2 workers
    python bench/e2e.py --pages 2000   # quicker look
    python bench/e2e.py --pages 4000 --checkpoints-cost   # resume checkpoints: their cost, and a resume's
    python bench/e2e.py --pages 4000 --cluster            # `curate submit` to 1 node x 2 CPUs vs 2 nodes x 1 CPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _measure import measure  # noqa: E402


# ------------------------------------------------------------------------------------ bare baseline
def _bare_file(args: tuple[str, str]) -> tuple[int, int]:
    """One WARC file, no framework: the same calls curate's operators make."""
    import fasttext
    from warcio.archiveiterator import ArchiveIterator

    from curate.writer import compress
    from operators.extract.engines import extract_page
    from operators.extract.operator import ExtractParams, decode_html
    from scorers.langid import bundled_lid_model
    from scorers.quality_signals import signals

    path, out_dir = args
    global _MODEL
    if "_MODEL" not in globals():
        _MODEL = fasttext.load_model(bundled_lid_model())
    step = next(s for s in yaml.safe_load((REPO / "pipeline.yaml").read_text())["steps"] if s["name"] == "extract")
    params = ExtractParams(**{k: v for k, v in step.items() if k != "name"})
    lines, n_in = [], 0
    with open(path, "rb") as fh:
        for rec in ArchiveIterator(fh):
            if rec.rec_type != "response":
                continue
            n_in += 1
            body = rec.content_stream().read()
            ctype = rec.http_headers.get_header("Content-Type")
            url = rec.rec_headers.get_header("WARC-Target-URI")
            page, _, _ = decode_html(body, ctype)
            res = extract_page({"html": page, "url": url, "engine": params.engine,
                                "options": params.trafilatura_options(), "with_metadata": params.with_metadata})
            text, meta = res["text"], res["meta"]
            if not text:
                continue
            (label,), (prob,) = _MODEL.predict(" ".join(text[:2000].split()), k=1)
            s = signals(text)
            if prob < 0.5 or s["word_count"] < 50 or s["dup_line_frac"] > 0.3 or s["dup_para_frac"] > 0.3 or \
                    s["symbol_to_word_ratio"] > 0.1 or s["frac_lines_bullet"] > 0.9:
                continue
            lines.append(json.dumps({"id": rec.rec_headers.get_header("WARC-Record-ID"), "text": text,
                                     "metadata": {"url": url, "title": meta.get("title"),
                                                  "lang": label[9:], **s}}, ensure_ascii=False))
    data = compress(("\n".join(lines) + "\n").encode(), "gzip")  # curate's own gzip (ISA-L), as in the output
    Path(out_dir, Path(path).name + ".jsonl.gz").write_bytes(data)
    return n_in, len(lines)


def bare_main(corpus: str, out_dir: str, workers: int) -> None:
    import multiprocessing as mp

    files = sorted(str(p) for p in Path(corpus).glob("*.warc.gz"))
    os.makedirs(out_dir, exist_ok=True)
    with mp.get_context("fork").Pool(workers) as pool:
        res = list(pool.imap_unordered(_bare_file, [(f, out_dir) for f in files]))
    print(json.dumps({"docs_in": sum(r[0] for r in res), "docs_out": sum(r[1] for r in res)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tokens-per-shard", type=int, default=5_000_000)
    ap.add_argument("--subset-only", action="store_true", help="skip the whole default pipeline")
    ap.add_argument("--compression", choices=["gzip", "zstd"], help="output.compression of both curate runs "
                    "(default: pipeline.yaml's)")
    ap.add_argument("--checkpoints-cost", action="store_true",
                    help="instead: the default pipeline with output.checkpoints on and off (each twice, alternating), "
                         "then one killed late (after shard's token runs) and resumed")
    ap.add_argument("--cluster", action="store_true",
                    help="instead: the default pipeline as `curate run` (local Ray), then `curate submit --wait` to a "
                         "local cluster of 1 node x WORKERS CPUs and of WORKERS nodes x 1 CPU; same output?")
    ap.add_argument("--preselect-cost", action="store_true",
                    help="instead: extract -> langid -> quality_signals [-> preselect] -> exact_dedup, with and "
                         "without the preselect step, alternating, twice each: what a cheap model step costs")
    ap.add_argument("--bare-worker", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.bare_worker:
        bare_main(*a.bare_worker, a.workers)
        return

    from make_corpus import corpus

    t = time.perf_counter()
    path = corpus(a.pages)
    print(f"corpus: {a.pages} pages in {path} ({time.perf_counter() - t:.1f} s to build or find)")
    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    full = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    full["input"].update(paths=[str(path)], source="bench")
    full["ray"] = {"num_cpus": a.workers}
    if a.compression:
        full["output"]["compression"] = a.compression
    for s in full["steps"]:
        if s["name"] == "shard":  # the sample's 20,000 would make ~1,000 shards of a 20M-token corpus
            s["tokens_per_shard"] = a.tokens_per_shard
    sub = yaml.safe_load(yaml.safe_dump(full))
    # the chain the bare loop does: extract, langid, Gopher-style signals, filters; no whole-dataset steps, and
    # only the filter rules over what those steps make
    kept = ("extract", "langid", "gopher")
    steps = []
    for s in sub["steps"]:
        if s["name"] == "filter":
            s["rules"] = [r for r in s["rules"] if all(name.split("__")[0] in kept for name in
                                                       re.findall(r"[a-z_]+__[a-z_]+", r.get("keep") or r.get("drop")))]
            if s["rules"]:
                steps.append(s)
        elif s["name"] in kept:
            steps.append(s)
    sub["steps"] = steps
    (tmp / "subset.yaml").write_text(yaml.safe_dump(sub))
    (tmp / "full.yaml").write_text(yaml.safe_dump(full))
    before = yaml.safe_load(yaml.safe_dump(full))  # the default pipeline as it was before the cascade engine
    next(s for s in before["steps"] if s["name"] == "extract")["engine"] = "trafilatura"
    (tmp / "full_trafilatura.yaml").write_text(yaml.safe_dump(before))

    if a.checkpoints_cost:
        checkpoints_cost(tmp, full)
        return
    if a.cluster:
        cluster_cost(tmp, full, a.workers)
        return
    if a.preselect_cost:
        preselect_cost(tmp, full)
        return
    bare = measure([sys.executable, __file__, "--workers", str(a.workers), "--bare-worker", str(path),
                    str(tmp / "bare")])
    bare_counts = json.loads(bare["stdout"].strip().splitlines()[-1])
    runs = {}
    for name in ("subset", "full", "full_trafilatura"):
        if name != "subset" and a.subset_only:
            continue
        res = measure([sys.executable, "-m", "curate.cli", "run", str(tmp / f"{name}.yaml"), "-o",
                       str(tmp / name), "-q"], env={"RAY_DEDUP_LOGS": "1"})
        stats = json.loads((tmp / name / "stats.json").read_text())
        assert stats["totals"]["documents_in"] == bare_counts["docs_in"], (stats["totals"], bare_counts)
        runs[name] = (res, stats)

    n = bare_counts["docs_in"]
    print(f"\n{'':<36}{'wall s':>9}{'docs/s':>9}{'peak PSS MB':>13}{'peak RSS MB':>13}{'docs out':>10}")
    print(f"{'bare multiprocessing loop':<36}{bare['wall_s']:>9.1f}{n / bare['wall_s']:>9.1f}{bare['pss_mb']:>13.0f}"
          f"{bare['tree_mb']:>13.0f}{bare_counts['docs_out']:>10}")
    for name, (res, stats) in runs.items():
        what = {"subset": "subset (bare loop's steps)", "full": "default pipeline.yaml (all steps)",
                "full_trafilatura": "default, engine: trafilatura"}[name]
        for label, wall in ((f"curate {what}", res["wall_s"]), ("  after Ray start", stats["elapsed_s"])):
            print(f"{label:<36}{wall:>9.1f}{n / wall:>9.1f}{res['pss_mb']:>13.0f}{res['tree_mb']:>13.0f}"
                  f"{stats['totals']['documents_out']:>10}")
    res, stats = runs["subset"]
    print(f"\nsubset ratio curate/bare (docs/s): whole command {bare['wall_s'] / res['wall_s']:.2f}x, "
          f"after Ray start {bare['wall_s'] / stats['elapsed_s']:.2f}x  (target >= 0.95x)")
    if "full" in runs:
        res, _ = runs["full"]
        print(f"whole default pipeline / bare loop (wall): {res['wall_s'] / bare['wall_s']:.2f}x  (target <= 1.3x)")
        old, _ = runs["full_trafilatura"]
        print(f"whole default pipeline, extract engine cascade vs trafilatura (wall): "
              f"{old['wall_s'] / res['wall_s']:.2f}x faster  (target >= 1.8x)")
    for name, (res, stats) in runs.items():
        ph = stats.get("phases") or {}
        accounted = sum(ph.values())
        print(f"\n{name}: {res['wall_s']:.1f} s wall; phases: " + ", ".join(f"{k} {v:.1f}" for k, v in ph.items())
              + f", exit (Ray shutdown) {res['wall_s'] - accounted:.1f} s; CPUs {stats['cluster']['cpus']:g}")
        print(f"  {'step':<16}{'seconds':>9}{'wall s':>9}{'workers':>9}{'parallelism':>13}")
        for s in stats["steps"]:
            par = f"{s['parallelism']:.2f}" if s.get("parallelism") is not None else "-"
            wall = f"{s['wall_s']:.1f}" if s.get("wall_s") is not None else "-"
            print(f"  {s['step']:<16}{s['seconds']:>9.1f}{wall:>9}{s.get('workers', '-'):>9}{par:>13}")
            for stage, sec in (s.get("stages") or {}).items():
                print(f"    {stage:<14}{sec:>9.1f}")


def checkpoints_cost(tmp: Path, full: dict) -> None:
    """What resume costs an uninterrupted run (checkpoints on vs off, same corpus, same call), and what a resume
    after a kill late in the run costs next to a whole run."""
    walls: dict[str, list[float]] = {"on": [], "off": []}
    for i, mode in enumerate(["on", "off", "off", "on"]):
        cfg = yaml.safe_load(yaml.safe_dump(full))
        cfg["output"]["checkpoints"] = mode == "on"
        path = tmp / f"ck-{mode}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        res = measure([sys.executable, "-m", "curate.cli", "run", str(path), "-o", str(tmp / f"ck-{i}"), "-q"])
        stats = json.loads((tmp / f"ck-{i}" / "stats.json").read_text())
        walls[mode].append(stats["elapsed_s"])
        print(f"checkpoints {mode:<3}: {res['wall_s']:6.1f} s command, {stats['elapsed_s']:6.1f} s after Ray start")
    on, off = min(walls["on"]), min(walls["off"])
    print(f"\ncheckpoints on/off (best of 2, after Ray start): {on:.1f} s / {off:.1f} s = {on / off:.3f}x "
          f"(target <= 1.05x)")
    cfg = tmp / "ck-on.yaml"
    out = tmp / "ck-killed"
    measure([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(out), "-q"],
            env={"CURATE_FAILPOINT": "shard:runs"}, expect_rc=-9)
    res = measure([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(out), "-q", "--resume"])
    stats = json.loads((out / "stats.json").read_text())
    print(f"resume after a kill -9 once shard's token runs were written: {res['wall_s']:.1f} s command, "
          f"{stats['elapsed_s']:.1f} s after Ray start = {stats['elapsed_s'] / on:.2f} of an uninterrupted run; "
          f"reused {stats['resume']['checkpoints_reused']}")


def preselect_cost(tmp: Path, full: dict) -> None:
    """The chain the preselect-overhead issue measured, with and without `preselect` (an actor step the chain
    before it fuses into), alternating so machine drift hits both; best of two each, whole command and after Ray
    start, and the step's own seconds."""
    chain = ("extract", "langid", "quality_signals", "preselect", "exact_dedup")
    walls: dict[str, list[tuple[float, float, float]]] = {"with": [], "without": []}
    for i, mode in enumerate(["with", "without", "without", "with"]):
        cfg = yaml.safe_load(yaml.safe_dump(full))
        cfg["steps"] = [s for s in cfg["steps"] if s["name"] in chain and (mode == "with" or s["name"] != "preselect")]
        path = tmp / f"ps-{mode}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        res = measure([sys.executable, "-m", "curate.cli", "run", str(path), "-o", str(tmp / f"ps-{i}"), "-q"])
        stats = json.loads((tmp / f"ps-{i}" / "stats.json").read_text())
        own = next((s["seconds"] for s in stats["steps"] if s["step"] == "preselect"), 0.0)
        walls[mode].append((res["wall_s"], stats["elapsed_s"], own))
        ext = next(s for s in stats["steps"] if s["step"] == "extract")
        print(f"{mode:<8} preselect: {res['wall_s']:6.1f} s command, {stats['elapsed_s']:6.1f} s after Ray start; "
              f"extract parallelism {ext.get('parallelism')}, preselect's own {own:.2f} s", flush=True)
    w, wo = min(walls["with"]), min(walls["without"])
    print(f"\nwith/without preselect (best of 2): command {w[0]:.1f} / {wo[0]:.1f} s = {w[0] / wo[0]:.3f}x, after Ray "
          f"start {w[1]:.1f} / {wo[1]:.1f} s = {w[1] / wo[1]:.3f}x (target <= 1.10x); preselect's own time "
          f"{w[2]:.2f} s")


def _same_bytes(a: Path, b: Path) -> bool:
    """Every output file but the timed and run-identity ones (stats.json, progress.jsonl, _run.json)."""
    skip = {"stats.json", "stats/progress.jsonl", "_run.json"}
    fa = {str(p.relative_to(a)): p for p in a.rglob("*") if p.is_file()}
    fb = {str(p.relative_to(b)): p for p in b.rglob("*") if p.is_file()}
    return fa.keys() == fb.keys() and all(fa[k].read_bytes() == fb[k].read_bytes() for k in fa if k not in skip)


def cluster_cost(tmp: Path, full: dict, cpus: int) -> None:
    """The default pipeline three ways on the same CPUs: `curate run` with a local Ray (the baseline), and
    `curate submit --wait` to a local cluster (curate.localcluster: `ray start` nodes with their own temp dirs and
    token auth) of one node x `cpus` CPUs and of `cpus` nodes x 1 CPU. All write to this machine's disk, which every
    node shares here; the outputs must be the same bytes."""
    from curate.localcluster import LocalCluster

    cfg = yaml.safe_load(yaml.safe_dump(full))
    cfg["output"]["added"] = "2026-01-01T00:00:00Z"  # the same `added`, so outputs compare byte for byte
    cfg.pop("ray", None)
    (tmp / "cluster.yaml").write_text(yaml.safe_dump(cfg))
    rows = []
    res = measure([sys.executable, "-m", "curate.cli", "run", str(tmp / "cluster.yaml"), "-o", str(tmp / "c-local"),
                   "-q"], cwd=tmp)
    rows.append(("curate run (local Ray, 2 CPUs)", res["wall_s"], tmp / "c-local"))
    for nodes, per in ((1, cpus), (cpus, 1)):
        out = tmp / f"c-{nodes}n"
        with LocalCluster(nodes=nodes, cpus_per_node=per) as c:
            res = measure([sys.executable, "-m", "curate.cli", "submit", "cluster.yaml", "--address", c.address,
                           "-o", str(out), "--wait", "-q"], cwd=tmp,
                          env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": c.token})
        rows.append((f"curate submit, {nodes} node(s) x {per} CPU", res["wall_s"], out))
    base = rows[1][1]
    print(f"\n{'':<40}{'wall s':>9}{'vs 1 node':>11}  same output as local run")
    for name, wall, out in rows:
        stats = json.loads((out / "stats.json").read_text())
        steps = {s["step"]: s for s in stats["steps"]}
        same = "yes" if out == rows[0][2] or _same_bytes(rows[0][2], out) else "NO"
        print(f"{name:<40}{wall:>9.1f}{wall / base:>10.2f}x  {same}   (after Ray start {stats['elapsed_s']:.1f} s; "
              f"exact_dedup {steps['exact_dedup']['seconds']:.1f} s, minhash_dedup "
              f"{steps['minhash_dedup']['seconds']:.1f} s, shard {steps['shard']['seconds']:.1f} s)")


if __name__ == "__main__":
    from _results import recording

    if "--bare-worker" in sys.argv:  # the baseline's own process: its last line is its counts, and it records nothing
        raise SystemExit(main())
    with recording("e2e", "End to end",
                   "the whole default pipeline against a bare multiprocessing loop making the same calls"):
        rc = main()
    raise SystemExit(rc)
