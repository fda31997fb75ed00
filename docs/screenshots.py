"""Screenshots of the built documentation site, taken in Debian's chromium through Playwright.

    make docs && .venv/bin/python docs/screenshots.py      # writes docs/screenshots/home.png, reference.png

tests/test_docs.py takes the same shots of the site it builds (into out/test-artifacts/docs/).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SHOTS = {"home.png": "", "reference.png": "reference/operators/minhash_dedup/"}


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1 (search runs in a web worker, which file:// URLs do not allow)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def take(browser, url: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    paths = []
    for name, rel in SHOTS.items():
        page.goto(url + rel)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / name))
        paths.append(out / name)
    page.close()
    return paths


def main() -> int:
    from playwright.sync_api import sync_playwright

    site = DOCS.parent / "site"
    if not (site / "index.html").exists():
        print("docs/screenshots.py: build the site first: make docs", file=sys.stderr)
        return 2
    with serve(site) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        for path in take(b, url, DOCS / "screenshots"):
            print(path)
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
