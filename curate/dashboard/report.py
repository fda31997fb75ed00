"""`curate report OUT [OUT2] -o report.html`: the dashboard's views as one self-contained HTML file.

The page is the dashboard's own (same app.js, same Chart.js, inlined), and the JSON every view would fetch is
computed here and embedded, keyed the way app.js asks for it: every view, a histogram of every numeric attribute,
and the first page of the document browser for every fate/step/reason with those documents' details. The file's
Content-Security-Policy allows no network request at all (no connect, no images, no fonts from anywhere).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curate.dashboard.run import RunError
from curate.dashboard.server import Dashboard, jsonable, static_bytes

REPORT_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
DOCS_PER_FACET = 10


def key(view: str, params: dict[str, Any]) -> str:
    """The same key app.js builds: view?k=v&... over the non-empty parameters, sorted by name."""
    items = sorted((k, v) for k, v in params.items() if v is not None and v != "")
    return f"{view}?" + "&".join(f"{k}={v}" for k, v in items)


def collect(app: Dashboard) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def put(view: str, params: dict[str, Any]) -> dict[str, Any]:
        q = {k: str(v) for k, v in params.items() if v is not None and v != ""}
        try:
            doc = app.answer(view, q)
        except RunError as e:
            doc = {"error": str(e)}
        out[key(view, q)] = jsonable(doc)
        return doc

    for k in range(len(app.runs)):
        idx = app.index(k)
        if idx is not None:
            idx.refresh()  # all of it: a report is of the whole run
        put("runs", {"run": k})
        for view in ("summary", "funnel", "progress", "languages", "dedup", "shards", "rephrase"):
            put(view, {"run": k})
        attrs = put("attributes", {"run": k})
        for attr in attrs.get("attributes", []):
            put("histogram", {"run": k, "attr": attr})
            if k == 0 and len(app.runs) > 1:
                put("compare_histogram", {"run": 0, "attr": attr})
        if k:
            continue  # the browser shows the first run
        first = put("documents", {"run": 0, "offset": 0})
        pages = [first]
        for f in first.get("facets", []):
            pages.append(put("documents", {"run": 0, "fate": f["fate"], "step": f["step"], "reason": f["reason"],
                                           "offset": 0}))
        seen: set[str] = set()
        for page in pages:
            for d in page.get("documents", [])[:DOCS_PER_FACET]:
                if d["id"] not in seen:
                    seen.add(d["id"])
                    put("document", {"run": 0, "id": d["id"]})
    return out


def render(roots: list[str], cache_dir: Path) -> str:
    app = Dashboard(roots, cache_dir)
    data = {"runs": roots, "views": collect(app)}
    # JSON inside <script>: no "<" may appear raw, or "</script>" in a document's text would end the element
    blob = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace("\u2028", "\\u2028").replace(
        "\u2029", "\\u2029")
    css = static_bytes("style.css").decode()
    chart = static_bytes("vendor/chart.umd.min.js").decode().replace("</script", "<\\/script")
    app_js = static_bytes("app.js").decode().replace("</script", "<\\/script")
    title = "curate report"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>\n'
            f"<style>{css}</style>\n"
            f'<script type="application/json" id="curate-data">{blob}</script>\n'
            f"<script>{chart}</script>\n</head><body>\n"
            f'<header id="head"><h1>curate report</h1><div id="run-line">loading…</div><div id="flags"></div></header>\n'
            f'<nav id="tabs"></nav><main id="view"></main>\n'
            f"<script>{app_js}</script>\n</body></html>\n")


def write(roots: list[str], dest: str, cache_dir: Path) -> int:
    html = render(roots, cache_dir)
    Path(dest).write_text(html, encoding="utf-8")
    return len(html.encode())


__all__ = ["render", "write", "key"]
