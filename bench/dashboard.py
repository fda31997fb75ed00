"""Dashboard at scale: every view's query, the page's first render and the server's memory on 1M- and 10M-document
stats, against scanning the parquet directly, in one run.

The data (bench/_synth_stats.py) is shaped like the default pipeline's output: one stats parquet per part of 1000
documents (input.docs_per_block's default), so 10M documents are 10,000 files of 60 columns; fates, reasons and
languages in the sample run's proportions. The users' way: `curate dashboard OUT` as a subprocess, its JSON views
fetched over HTTP, its page opened in headless Chromium (Debian's, through Playwright) for the first render.

Baselines, each measured in its own process on the same files:
* pyarrow datasets: scan the parquet files with projection, aggregate with pyarrow (group_by) and numpy;
* DuckDB over the parquet: the same SQL as the dashboard, on `read_parquet(glob)`, no local index.
The dashboard's ingest of the files into its index is timed apart (once per file, as parts appear).

    python bench/dashboard.py [--rows 1000000 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _synth_stats import make_run  # noqa: E402

CACHE = REPO / "bench" / ".cache" / "dashboard"
ATTR = "quality_signals__heuristics__word_count"
VIEW_URLS = {
    "summary": "summary", "funnel": "funnel", "progress": "progress", "languages": "languages",
    "attributes": "attributes", "histogram": f"histogram?attr={ATTR}",
    "histogram_preselect": "histogram?attr=preselect__fasttext__score", "dedup": "dedup",
    "documents_facet": "documents?fate=drop&step=filter&reason=gopher_repetition",
}

BASELINE = r'''
import json, resource, sys, time
import numpy as np
import pyarrow.dataset as ds
import pyarrow.compute as pc
kind, root, attr = sys.argv[1:4]
out = {}
if kind == "pyarrow":
    d = ds.dataset(root + "/stats/docs", format="parquet")
    t = time.perf_counter()
    tab = d.to_table(columns=["step", "fate", "reason", "chars"])
    tab.group_by(["step", "fate", "reason"]).aggregate([([], "count_all"), ("chars", "sum")])
    out["funnel"] = time.perf_counter() - t
    t = time.perf_counter()
    tab = d.to_table(columns=[attr, "fate"], filter=pc.field(attr).is_valid())
    v = tab.column(attr).to_numpy()
    f = tab.column("fate").to_numpy(zero_copy_only=False)
    lo, hi = v.min(), v.max()
    {k: np.histogram(v[f == k], 40, (lo, hi)) for k in set(f)}
    out["histogram"] = time.perf_counter() - t
else:
    import duckdb
    con = duckdb.connect(config={"threads": 2, "memory_limit": "512MB"})
    con.execute("SET enable_progress_bar = false")
    src = f"read_parquet('{root}/stats/docs/*.parquet')"
    t = time.perf_counter()
    con.execute(f"SELECT step, fate, reason, count(*), sum(chars) FROM {src} GROUP BY ALL").fetchall()
    out["funnel"] = time.perf_counter() - t
    t = time.perf_counter()
    lo, hi = con.execute(f"SELECT min({attr}), max({attr}) FROM {src}").fetchone()
    w = (hi - lo) / 40
    con.execute(f"SELECT least(CAST(floor(({attr} - {lo}) / {w}) AS INTEGER), 39), fate, count(*) FROM {src} "
                f"WHERE {attr} IS NOT NULL GROUP BY ALL").fetchall()
    out["histogram"] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
'''


def baseline(kind: str, root: Path) -> dict[str, float]:
    r = subprocess.run([sys.executable, "-c", BASELINE, kind, str(root), ATTR], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=600) as r:
        return json.loads(r.read())


def hwm_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_render(url: str) -> dict[str, float] | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not chromium:
        return None
    out = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for view in ("funnel", "scores", "languages", "documents"):
            page = b.new_page()
            t = time.perf_counter()
            page.goto(f"{url}#{view}")
            page.wait_for_selector(f"main[data-ready={view}]", timeout=120_000)
            out[view] = time.perf_counter() - t
            page.close()
        b.close()
    return out


def measure(rows: int, repeat: int) -> dict:
    root = make_run(CACHE / f"{rows}", rows)
    res: dict = {"rows": rows, "files": len(list((root / "stats" / "docs").glob("*.parquet")))}
    res["pyarrow"] = baseline("pyarrow", root)
    res["duckdb_parquet"] = baseline("duckdb", root)
    cache = Path(tempfile.mkdtemp(prefix="curate-dash-bench-"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "dashboard", str(root), "--port", "0",
                             "--cache-dir", str(cache)], stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+/)", proc.stdout.readline()).group(1)
        while True:
            idx = get(f"{url}api/summary")["index"]
            if idx["files_total"] and idx["files_indexed"] == idx["files_total"]:
                break
            time.sleep(0.5)
        res["index_s"] = time.perf_counter() - t0
        res["index_mb"] = sum(f.stat().st_size for f in cache.rglob("*")) / 1e6
        views = {}
        urls = {**VIEW_URLS, "documents_deep_page": f"documents?fate=kept&offset={rows // 5}",
                "document": f"document?id={res['files'] // 2:06d}-000500"}  # one in the middle of the run
        for name, path in urls.items():
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                doc = get(f"{url}api/{path}")
                times.append(time.perf_counter() - t)
                assert "error" not in doc, (name, doc)
            views[name] = {"median": statistics.median(times), "max": max(times)}
        res["views"] = views
        res["first_render"] = first_render(url)
        res["server_peak_rss_mb"] = hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(cache, ignore_errors=True)
    return res


def report(r: dict) -> None:
    v = r["views"]
    print(f"\n== {r['rows']:,} documents in {r['files']:,} stats files ==")
    print(f"index (one-off, incremental as parts appear): {r['index_s']:.1f} s, {r['index_mb']:.0f} MB on disk")
    print(f"{'view':<22}{'median s':>10}{'max s':>9}")
    for name, t in v.items():
        print(f"{name:<22}{t['median']:>10.3f}{t['max']:>9.3f}")
    worst = max(t["max"] for t in v.values())
    print(f"slowest view: {worst:.3f} s (target <= 1 s)")
    for kind in ("pyarrow", "duckdb_parquet"):
        b = r[kind]
        print(f"baseline {kind:<15} funnel {b['funnel']:.3f} s ({b['funnel'] / v['funnel']['median']:.1f}x the "
              f"dashboard's), histogram {b['histogram']:.3f} s ({b['histogram'] / v['histogram']['median']:.1f}x), "
              f"peak RSS {b['peak_rss_mb']:.0f} MB")
    if r["first_render"]:
        fr = r["first_render"]
        print("first render (page load to view drawn): " + ", ".join(f"{k} {s:.2f} s" for k, s in fr.items())
              + " (target <= 3 s)")
    print(f"server peak RSS: {r['server_peak_rss_mb']:.0f} MB (target <= 1024 MB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = []
    for rows in args.rows:
        r = measure(rows, args.repeat)
        report(r)
        results.append(r)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    from _results import recording

    with recording("dashboard", "Dashboard at scale",
                   "every dashboard view's query time, first render and server memory at 1M and 10M documents"):
        rc = main()
    raise SystemExit(rc)
