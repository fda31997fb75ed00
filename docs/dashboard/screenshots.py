"""The dashboard's screenshots (docs/concepts/dashboard.md): the real page over real runs, in headless Chromium
(Debian's, via Playwright).

    python docs/dashboard/screenshots.py OUT OUT2 [--search TEXT]

OUT, OUT2: two runs of the sample (the README's are tests/test_dashboard.py's runs A and B: the default pipeline on
the sample plus a page whose text is markup, and the same input with a stricter word-count rule). Writes
funnel.jpg, scores.jpg, documents.jpg and compare.jpg beside this file (JPEG, quality 60: a few tens of KB each).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outputs", nargs=2)
    ap.add_argument("--search", default="evil.example", help="the document the documents view opens (id or URL part)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    cache = tempfile.mkdtemp(prefix="curate-shots-")
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "dashboard", *args.outputs, "--port", "0",
                             "--cache-dir", cache], stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+/)", proc.stdout.readline()).group(1)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = b.new_page(viewport={"width": 1280, "height": 820})
            page.goto(url)

            def show(view: str) -> None:
                page.click(f"#tabs button[data-view={view}]")
                page.wait_for_selector(f"main[data-ready={view}] [data-view={view}]")

            show("funnel")
            page.screenshot(path=str(HERE / "funnel.jpg"), type="jpeg", quality=60)
            show("scores")
            page.select_option("#attr", "quality_signals__heuristics__word_count")
            page.wait_for_selector("table[data-table=thresholds] >> text=too_few_words")
            page.screenshot(path=str(HERE / "scores.jpg"), type="jpeg", quality=60)
            show("documents")
            page.fill("#search", args.search)
            page.click("text=find")
            page.locator("table[data-table=documents] tr.click").first.click()
            page.wait_for_selector("[data-k=doc-fate]")
            page.screenshot(path=str(HERE / "documents.jpg"), type="jpeg", quality=60)
            show("compare")
            page.select_option("#cmp-attr", "quality_signals__heuristics__word_count")
            page.wait_for_selector("main[data-ready=compare] canvas")
            page.screenshot(path=str(HERE / "compare.jpg"), type="jpeg", quality=60, full_page=True)
            b.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        shutil.rmtree(cache, ignore_errors=True)
    for f in sorted(HERE.glob("*.jpg")):
        print(f"{f.relative_to(HERE.parents[1])}: {f.stat().st_size / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
