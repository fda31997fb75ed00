"""`curate dashboard OUT [OUT2]`: the page, its static assets and one JSON endpoint per view, read-only.

Standard library HTTP server (threaded): the page is a handful of small GETs, and the heavy work is DuckDB's,
which runs in its own threads, so a web framework would add a dependency and nothing else. Only GET and HEAD
are answered. Files served are a fixed list inside the package; the run roots come from the command line only,
and every view reads through the ``Run`` made from them, so no request names a path. Every response carries a
Content-Security-Policy that allows scripts from this server only: even a document text that got into the page
as markup could not run. A view that fails answers ``{"error": "<one line>"}``, and the server keeps serving.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from curate.dashboard import views
from curate.dashboard.index import DocIndex
from curate.dashboard.run import Run, RunError

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8"),
          "/static/chart.umd.min.js": ("vendor/chart.umd.min.js", "text/javascript; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
REFRESH_S = 2.0


def static_bytes(name: str) -> bytes:
    return resources.files("curate.dashboard").joinpath("static", name).read_bytes()


def jsonable(x: Any) -> Any:
    """JSON with no NaN/Infinity (the browser's JSON.parse rejects them) and dates as strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


class Dashboard:
    """The runs being shown and their indexes; a background thread keeps the indexes current."""

    def __init__(self, roots: list[str], cache_dir: Path):
        self.runs = [Run(r) for r in roots]
        self.cache_dir = cache_dir
        self._indexes: dict[int, DocIndex] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def index(self, k: int) -> DocIndex | None:
        """The run's index, made once stats.json says when the run started (the cache key); None before."""
        with self._lock:
            if k in self._indexes:
                return self._indexes[k]
            try:
                started = self.runs[k].stats().get("started") or ""
            except RunError:
                return None
            self._indexes[k] = DocIndex(self.runs[k], self.cache_dir, started)
            return self._indexes[k]

    def refresh_forever(self) -> None:
        while not self._stop.is_set():
            behind = False
            for k in range(len(self.runs)):
                idx = self.index(k)
                if idx is not None:
                    cov = idx.refresh(max_batches=4)  # a bounded step, so a second run is not starved
                    behind |= cov["files_indexed"] < cov["files_total"] and idx.error is None
            self._stop.wait(0 if behind else REFRESH_S)

    def start(self) -> None:
        threading.Thread(target=self.refresh_forever, name="curate-index", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def answer(self, view: str, q: dict[str, str]) -> dict[str, Any]:
        k = int(q.get("run", "0")) if q.get("run", "0").isdigit() else -1
        if not 0 <= k < len(self.runs):
            raise RunError(f"no run {q.get('run')!r}: this dashboard shows {len(self.runs)}")
        run, idx = self.runs[k], self.index(k)
        if view == "runs":
            return {"runs": [r.root for r in self.runs]}
        if view == "compare_histogram":
            if len(self.runs) < 2:
                raise RunError("compare needs two outputs: curate dashboard OUT OUT2")
            return views.compare_histogram(self.runs[:2], [self.index(0), self.index(1)], q.get("attr", ""))
        fn = VIEWS.get(view)
        if fn is None:
            raise RunError(f"no view {view!r}")
        return fn(run, idx, q)


VIEWS: dict[str, Callable[[Run, DocIndex | None, dict[str, str]], dict[str, Any]]] = {
    "summary": lambda r, i, q: views.summary(r, i),
    "funnel": lambda r, i, q: views.funnel(r, i),
    "progress": lambda r, i, q: views.progress(r, i),
    "languages": lambda r, i, q: views.languages(r, i),
    "attributes": lambda r, i, q: views.attributes(r, i),
    "histogram": lambda r, i, q: views.histogram(r, i, q.get("attr", "")),
    "dedup": lambda r, i, q: views.dedup(r, i),
    "shards": lambda r, i, q: views.shards(r, i),
    "rephrase": lambda r, i, q: views.rephrase(r, i),
    "documents": lambda r, i, q: views.documents(
        r, i, q.get("fate"), q.get("step"), q.get("reason"), q.get("language"), q.get("q"),
        int(q["offset"]) if q.get("offset", "").isdigit() else 0,
        int(q["limit"]) if q.get("limit", "").isdigit() else views.PAGE),
    "document": lambda r, i, q: views.document(r, i, q.get("id", "")),
}


def make_handler(app: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "curate-dashboard"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: errors are logged in _api
            pass

        def _send(self, code: int, body: bytes, ctype: str, head_only: bool = False) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head_only:
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET(head_only=True)

        def do_GET(self, head_only: bool = False) -> None:
            url = urlsplit(self.path)
            if url.path in STATIC:
                name, ctype = STATIC[url.path]
                self._send(200, static_bytes(name), ctype, head_only)
            elif url.path.startswith("/api/"):
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                code, doc = self._api(url.path[len("/api/"):], q)
                self._send(code, json.dumps(jsonable(doc)).encode(), "application/json", head_only)
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8", head_only)

        def _api(self, view: str, q: dict[str, str]) -> tuple[int, dict[str, Any]]:
            if view not in VIEWS and view not in ("runs", "compare_histogram"):
                return 404, {"error": f"no view {view!r}"}
            try:
                return 200, app.answer(view, q)
            except RunError as e:
                return 200, {"error": str(e)}
            except Exception as e:  # never a stack trace on the page; one line in the server's log
                print(f"dashboard: view {view} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                return 500, {"error": f"view {view} failed: {type(e).__name__}: {e}"}

        def _refuse(self) -> None:
            self._send(405, b"read-only\n", "text/plain; charset=utf-8")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler


def serve(roots: list[str], host: str, port: int, cache_dir: Path,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted. ``ready`` gets the page's URL once the socket listens."""
    app = Dashboard(roots, cache_dir)
    httpd = ThreadingHTTPServer((host, port), make_handler(app))
    httpd.daemon_threads = True
    app.start()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{httpd.server_address[1]}/"
    if ready:
        ready(url)
    try:
        httpd.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
        httpd.server_close()
        time.sleep(0)
