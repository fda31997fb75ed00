"""The dashboard in a real browser: Debian's chromium (installed by `make browser`), driven by Playwright, over
`curate dashboard` serving real runs of the sample pipeline.

One module, one server, one browser: run A (the default pipeline on the sample WARCs plus a page whose text is
markup) is started while the page is already open, so the page sees the output missing, the run going, and the
run done; run B (same input, stricter word-count rule, fewer steps) is the second run of the compare view.
Screenshots of every view land in out/test-artifacts/dashboard/ ($CURATE_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import yaml

from conftest import ENGLISH, REPO, SAMPLE, article, write_warc

pytestmark = pytest.mark.slow
ARTIFACTS = Path(os.environ.get("CURATE_TEST_ARTIFACTS") or REPO / "out" / "test-artifacts") / "dashboard"
HOSTILE_URL = "https://evil.example/page?q=<script>window.__pwned=3</script>"
HOSTILE_TEXT = '<script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned = 2">'
VIEWS = ["funnel", "progress", "languages", "scores", "dedup", "shards", "rephrase", "documents", "compare"]


def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.fail("Debian's chromium is not installed: `make browser` (run by `make test`) installs it")
    return path


def _steps_named(rule: dict) -> set[str]:
    """The steps whose attributes (``<step>__<tagger>__<key>``) a filter rule reads."""
    return set(re.findall(r"\b([a-z_]+?)__\w+?__\w+", f"{rule.get('keep') or ''} {rule.get('drop') or ''}"))


def _config(tmp: Path, name: str, inputs: list[str], only: tuple[str, ...] | None = None,
            **keep: str) -> Path:
    """The tests' pipeline (tests/pipelines/dashboard.yaml) on ``inputs``; with ``only``, just those steps (filter
    rules on others' scores go); ``keep``: reason -> a new keep expression."""
    cfg = yaml.safe_load((REPO / "tests" / "pipelines" / "dashboard.yaml").read_text())
    cfg["input"]["paths"] = inputs
    cfg["output"]["added"] = "2026-01-01T00:00:00Z"
    if only is not None:
        cfg["steps"] = [s for s in cfg["steps"] if s["name"] in only]
    for s in cfg["steps"]:
        if "rules" in s:
            s["rules"] = [{**r, **({"keep": keep[r["reason"]]} if r["reason"] in keep else {})} for r in s["rules"]
                          if only is None or _steps_named(r) <= set(only)]
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _run(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(out), "-q"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _serve(*roots: Path | str, cache: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "dashboard", *map(str, roots), "--port", "0",
                             "--cache-dir", str(cache)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not m:
        proc.kill()
        pytest.fail(f"dashboard did not start: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, browser):
    """Run A watched live from before its output exists; then run B. Yields the server, the page and what it saw."""
    tmp = tmp_path_factory.mktemp("dash")
    hostile = article("Markup in text", ENGLISH).replace("<article><h1>Markup in text</h1>", (
        "<article><h1>Markup in text</h1><p>" + HOSTILE_TEXT.replace("&", "&amp;").replace("<", "&lt;")
        .replace(">", "&gt;") + "</p>"))
    write_warc(tmp / "hostile.warc.gz", [(HOSTILE_URL, hostile.encode(), "text/html; charset=utf-8")])
    inputs = [str(SAMPLE) + "/", str(tmp / "hostile.warc.gz")]
    out_a, out_b = tmp / "a", tmp / "b"
    cfg_a = _config(tmp, "a", inputs)
    cfg_b = _config(tmp, "b", inputs, only=("extract", "langid", "quality_signals", "filter"),
                    too_few_words="quality_signals__heuristics__word_count >= 200")
    server, url = _serve(out_a, out_b, cache=tmp / "cache")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    seen: dict[str, object] = {"statuses": [], "elapsed_running": set()}
    try:
        page.goto(url)
        page.wait_for_selector("[data-k=error]")
        seen["missing"] = page.inner_text("#flags")
        run_a = _run(cfg_a, out_a)
        deadline = time.time() + 300
        while time.time() < deadline:
            status = page.inner_text("[data-k=status]")
            seen["statuses"].append(status)
            if status == "running":
                seen["elapsed_running"].add(page.inner_text("#run-line"))
            if status == "done" and run_a.poll() is not None:
                break
            time.sleep(0.5)
        log_a = run_a.communicate()[0]
        assert run_a.returncode == 0, log_a[-3000:]
        run_b = _run(cfg_b, out_b)
        log_b = run_b.communicate(timeout=300)[0]
        assert run_b.returncode == 0, log_b[-3000:]
        _wait_indexed(url, 0)
        _wait_indexed(url, 1)
        page.reload()
        yield {"url": url, "page": page, "a": out_a, "b": out_b, "seen": seen, "errors": errors, "tmp": tmp,
               "server": server}
    finally:
        page.close()
        _stop(server)


def _wait_indexed(url: str, run: int) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        s = _get(f"{url}api/summary?run={run}")
        idx = s.get("index") or {}
        if s.get("status") == "done" and idx.get("files_total") and idx["files_indexed"] == idx["files_total"]:
            return
        time.sleep(0.5)
    pytest.fail(f"run {run} not indexed: {s}")


def _docs(out: Path):
    return ds.dataset(str(out / "stats" / "docs"), format="parquet").to_table()


def _show(page, view: str) -> None:
    page.click(f"#tabs button[data-view={view}]")
    page.wait_for_selector(f"main[data-ready={view}] [data-view={view}]")


def _table(page, name: str) -> list[list[str]]:
    return page.eval_on_selector(f"table[data-table={name}]", "t => [...t.rows].slice(1).map(r => "
                                                               "[...r.cells].map(c => c.innerText))")


def _n(s: str) -> int:
    return int(s.replace(",", "") or 0)


def expect(locator):
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def test_live_run_seen_from_missing_to_done(live):
    seen = live["seen"]
    assert "does not exist" in seen["missing"]
    assert "running" in seen["statuses"] and seen["statuses"][-1] == "done"
    assert len(seen["elapsed_running"]) >= 2, "the header did not change while the run went"


def test_every_view_loads_with_a_screenshot(live):
    page = live["page"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for view in VIEWS:
        _show(page, view)
        assert not page.query_selector(f"main[data-ready={view}] .msg.error"), page.inner_text("main")
        page.screenshot(path=str(ARTIFACTS / f"{view}.png"), full_page=True)
    assert not live["errors"]


def test_funnel_equals_stats_json(live):
    page = live["page"]
    stats = json.loads((live["a"] / "stats.json").read_text())
    _show(page, "funnel")
    t = stats["totals"]
    for k, want in (("in", t["documents_in"]), ("out", t["documents_out"]), ("dropped", t["dropped"]),
                    ("errors", t["errors"]), ("chars", t["characters_out"])):
        assert _n(page.inner_text(f"[data-view=funnel] [data-k={k}]")) == want, k
    rows = _table(page, "funnel")
    assert [(r[0], _n(r[1]), _n(r[2])) for r in rows] == [(s["step"], s["in"], s["out"]) for s in stats["steps"]]
    shard = next(s for s in stats["steps"] if s["step"] == "shard")
    assert _n(page.inner_text("[data-view=funnel] [data-k=tokens]")) == shard["info"]["text_tokens"]


def test_languages_and_histogram_equal_the_parquet(live):
    page = live["page"]
    docs = _docs(live["a"])
    lang = docs.column("language").to_pylist()
    fate = docs.column("fate").to_pylist()
    _show(page, "languages")
    rows = {r[0]: (_n(r[1]), _n(r[2])) for r in _table(page, "languages")}
    for code in {x or "(none)" for x in lang}:
        kept = sum(1 for x, f in zip(lang, fate) if (x or "(none)") == code and f == "kept")
        assert rows[code] == (kept, sum(1 for x in lang if (x or "(none)") == code) - kept), code
    attr = "quality_signals__heuristics__word_count"
    h = _get(f"{live['url']}api/histogram?run=0&attr={attr}")
    values = np.array([v for v in docs.column(attr).to_pylist() if v is not None])
    want, _ = np.histogram(values, bins=len(h["edges"]) - 1, range=(values.min(), values.max()))
    got = np.sum([c for c in h["counts"].values()], axis=0)
    assert got.tolist() == want.tolist()
    assert {t["reason"] for t in h["thresholds"]} == {"too_few_words"}
    _show(page, "scores")
    page.select_option("#attr", attr)
    page.wait_for_selector("table[data-table=thresholds] >> text=too_few_words")


def test_document_browser_shows_a_dropped_document_with_reason_and_provenance(live):
    page = live["page"]
    docs = _docs(live["a"]).to_pylist()
    target = next(d for d in docs if d["reason"] == "too_few_words")
    _show(page, "documents")
    n = sum(d["reason"] == "too_few_words" for d in docs)
    page.select_option("#facet", label=f"drop · filter · too_few_words ({n})")
    expect(page.locator("[data-k=total]")).to_have_text(f"{n} documents")
    page.click(f"table[data-table=documents] tr.click >> text={target['id']}")
    page.wait_for_selector("[data-k=doc-reason]")
    assert page.inner_text("[data-k=doc-id]") == target["id"]
    assert page.inner_text("[data-k=doc-reason]") == "too_few_words"
    assert page.inner_text("[data-k=prov-file]") == target["file"]
    assert page.inner_text("[data-k=prov-url]") == target["url"]
    assert page.inner_text("[data-k=prov-record_id]") == target["record_id"] and target["record_id"]
    assert _n(page.inner_text("[data-k=prov-offset]")) == target["offset"]


def test_a_duplicate_links_the_kept_document_it_duplicates(live):
    page = live["page"]
    docs = {d["id"]: d for d in _docs(live["a"]).to_pylist()}
    dup = next(d for d in docs.values() if d["reason"] == "exact_duplicate")
    rep = docs[dup["exact_dedup__cluster"]]
    assert rep["fate"] == "kept"
    _show(page, "documents")
    page.fill("#search", dup["id"])
    page.get_by_role("button", name="find", exact=True).click()
    page.click(f"table[data-table=documents] tr.click >> text={dup['id']}")
    page.wait_for_selector("[data-k=dup]")
    assert rep["id"] in page.inner_text("[data-k=dup]")
    page.click(f"[data-k=dup] a.link >> text={rep['id']}")
    expect(page.locator("[data-k=doc-id]")).to_have_text(rep["id"])
    page.wait_for_selector("[data-k=doc-text]")
    assert len(page.inner_text("[data-k=doc-text]")) > 100


def test_document_view_lists_what_edit_steps_changed(live):
    """A document whose e-mail address the `edit` step replaced: the view lists the step, the rule, how many
    spans and characters, and the piece that went."""
    page = live["page"]
    docs = _docs(live["a"]).to_pylist()
    target = next(d for d in docs if d["fate"] == "kept" and d["edits"] and "pii__regex__email" in d["edits"])
    record = json.loads(target["edits"])["edit"]["pii__regex__email"]
    _show(page, "documents")
    page.fill("#search", target["id"])
    page.get_by_role("button", name="find", exact=True).click()
    page.click(f"table[data-table=documents] tr.click >> text={target['id']}")
    page.wait_for_selector("table[data-table=doc-edits]")
    row = _table(page, "doc-edits")[0]
    assert row[:4] == ["edit", "pii__regex__email", str(record["spans"]), str(record["chars"])]
    at, piece = record["removed"][0]
    assert f"{at}: {json.dumps(piece)}" in row[4] and "@" in piece


def test_hostile_document_text_is_shown_as_text_and_runs_nothing(live):
    page = live["page"]
    docs = _docs(live["a"]).to_pylist()
    evil = next(d for d in docs if d["url"] == HOSTILE_URL)
    assert evil["fate"] == "kept", evil["reason"]
    _show(page, "documents")
    row = page.locator("table[data-table=documents] tr.click", has_text=evil["id"])
    for _ in range(30):  # the document index is built in the background: under load a search can come first
        # fill every time: a live refresh redraws the view, and the search box with it, between fill and click
        page.fill("#search", "evil.example")
        page.get_by_role("button", name="find", exact=True).click()  # not "text=find": that matches any URL with it
        page.wait_for_timeout(1000)
        if row.count():
            break
    expect(row).to_contain_text(HOSTILE_URL)
    row.click()
    page.wait_for_selector("[data-k=doc-text]")
    text = page.inner_text("[data-k=doc-text]")
    assert "<script>window.__pwned = 1</script>" in text and '<img src=x onerror="window.__pwned = 2">' in text
    assert page.evaluate("window.__pwned") is None
    assert page.eval_on_selector("#detail", "d => d.querySelectorAll('script, img').length") == 0
    page.screenshot(path=str(ARTIFACTS / "hostile-document.png"))


def test_compare_shows_both_runs(live):
    page = live["page"]
    a, b = (json.loads((live[k] / "stats.json").read_text()) for k in ("a", "b"))
    _show(page, "compare")
    rows = {r[0]: r for r in _table(page, "compare")}
    for s in a["steps"]:
        assert _n(rows[s["step"]][2]) == s["out"]
    for s in b["steps"]:
        assert _n(rows[s["step"]][5]) == s["out"]
    totals = _table(page, "compare-totals")[0]
    assert (_n(totals[1]), _n(totals[2])) == (a["totals"]["documents_out"], b["totals"]["documents_out"])
    assert a["totals"]["documents_out"] != b["totals"]["documents_out"]
    attr = "quality_signals__heuristics__word_count"
    h = _get(f"{live['url']}api/compare_histogram?attr={attr}")["runs"]
    assert h[0]["edges"] == h[1]["edges"]  # the same bins, so the bars line up
    for hist, out in zip(h, (live["a"], live["b"])):
        assert sum(map(sum, hist["counts"].values())) == _docs(out).column(attr).drop_null().length()
    assert _table(page, "compare")[[r[0] for r in _table(page, "compare")].index("shard")][7] == "–"


def test_server_is_read_only_and_reads_only_its_runs(live):
    url = live["url"]
    req = urllib.request.Request(f"{url}api/funnel", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
    for path in ("static/../../etc/passwd", "..%2f..%2fetc%2fpasswd", "static/%2e%2e/pyproject.toml",
                 "stats.json", "api/../stats.json"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + path, timeout=10)
        assert e.value.code == 404, path
    assert "no run" in _get(f"{url}api/funnel?run=7")["error"]
    assert "unknown attribute" in _get(f"{url}api/histogram?attr=../../etc/passwd")["error"]
    assert "no document" in _get(f"{url}api/document?id=%27%3B%20DROP%20TABLE%20docs%3B--")["error"]
    with urllib.request.urlopen(url, timeout=10) as r:
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert live["server"].poll() is None


def test_bad_outputs_give_a_message_and_the_server_keeps_serving(live, browser, tmp_path):
    root = tmp_path / "bad"
    server, url = _serve(root, cache=tmp_path / "cache")
    page = browser.new_page()
    good = json.loads((live["a"] / "stats.json").read_text())
    cases = [
        ("missing", None, "does not exist"),
        ("half-written", lambda: (root / "stats.json").write_text('{"status": "running", "ste'), "not valid JSON"),
        ("not stats", lambda: (root / "stats.json").write_text('[1, 2]'), "not a curate stats file"),
        ("failed", lambda: (root / "stats.json").write_text(json.dumps({**good, "status": "failed"})), "the run failed"),
        ("empty", lambda: (root / "stats.json").write_text(json.dumps({**good, "status": "done", "steps": [], "totals": {
            "documents_in": 0, "documents_out": 0, "dropped": 0, "errors": 0, "balanced": True}})), None),
        ("stale", lambda: (root / "stats.json").write_text(json.dumps({**good, "status": "running",
                                                                        "updated": "2020-01-01T00:00:00Z"})),
         "may have died"),
    ]
    try:
        for name, make, want in cases:
            if make:
                root.mkdir(exist_ok=True)
                make()
            page.goto(f"{url}?case={len(name)}{name[:3]}#funnel")  # a new document, not a hash change
            page.wait_for_selector("main[data-ready=funnel]")
            text = page.inner_text("body")
            if want:
                assert want in text, (name, text)
            assert "Traceback" not in text, name
            for view in ("languages", "scores", "documents", "shards"):
                _show(page, view)
                assert "Traceback" not in page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / f"bad-{name}.png"))
            assert server.poll() is None, name
    finally:
        page.close()
        _stop(server)


def test_report_is_self_contained_and_opens_offline(live, browser, tmp_path):
    dest = tmp_path / "report.html"
    # the serving dashboard's cache: its index files are locked by that process, so the report builds its own
    r = subprocess.run([sys.executable, "-m", "curate.cli", "report", str(live["a"]), str(live["b"]), "-o", str(dest),
                        "--cache-dir", str(live["tmp"] / "cache")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    context = browser.new_context(offline=True)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(dest.as_uri())
    stats = json.loads((live["a"] / "stats.json").read_text())
    try:
        for view in VIEWS:
            _show(page, view)
            page.screenshot(path=str(ARTIFACTS / f"report-{view}.png"), full_page=True)
        _show(page, "funnel")
        assert _n(page.inner_text("[data-view=funnel] [data-k=out]")) == stats["totals"]["documents_out"]
        _show(page, "scores")
        assert page.query_selector("canvas")
    finally:
        context.close()
    assert requests == [dest.as_uri()], requests
    assert not errors


def test_dashboard_reads_a_run_on_object_storage(live, tmp_path):
    import boto3
    from moto.server import ThreadedMotoServer

    from curate.localcluster import free_port

    creds = {"AWS_ACCESS_KEY_ID": "curate-test", "AWS_SECRET_ACCESS_KEY": "curate-test",
             "AWS_DEFAULT_REGION": "us-east-1"}
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="curate-test",
                          aws_secret_access_key="curate-test", region_name="us-east-1")
        s3.create_bucket(Bucket="dash")
        for f in live["a"].rglob("*"):
            if f.is_file():
                s3.upload_file(str(f), "dash", f"run/{f.relative_to(live['a'])}")
        server, url = _serve("s3://dash/run", cache=tmp_path / "cache",
                             env={**creds, "AWS_ENDPOINT_URL": endpoint})
        try:
            local = _get(f"{live['url']}api/funnel?run=0")
            deadline = time.time() + 60
            while time.time() < deadline:
                remote = _get(f"{url}api/funnel")
                if remote.get("by_fate") and sum(r["documents"] for r in remote["by_fate"]) == \
                        local["totals"]["documents_in"]:
                    break
                time.sleep(0.5)
            assert remote["steps"] == local["steps"] and sorted(map(str, remote["by_fate"])) == \
                sorted(map(str, local["by_fate"]))
            doc = next(d for d in _docs(live["a"]).to_pylist() if d["fate"] == "kept")
            got = _get(f"{url}api/document?id={doc['id']}")
            assert got["text"]["found"] and len(got["text"]["text"]) == doc["chars"] or got["text"]["pieces"] > 1
        finally:
            _stop(server)
    finally:
        moto.stop()


def test_step_counts_are_exported_as_ray_metrics(ray_session, tmp_path):
    """The driver's gauges reach the node's Prometheus endpoint with stats.json's numbers."""
    import ray

    from conftest import write_jsonl
    from curate.config import parse_config
    from curate.runner import run_pipeline

    write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": " ".join(ENGLISH[: 2 + 3 * i])} for i in range(4)])
    cfg = parse_config({"input": {"paths": [str(tmp_path / "in.jsonl")]}, "steps": [
        {"name": "quality_signals"},
        {"name": "filter", "rules": [{"reason": "too_few_words", "keep": "quality_signals__heuristics__word_count >= 60"}]}]})
    out = str(tmp_path / "out")
    stats = run_pipeline(cfg, out, progress=False)
    dropped = next(s for s in stats["steps"] if s["step"] == "filter")["dropped"]["too_few_words"]
    assert 0 < dropped < 4
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    want = {f'ray_curate_run_documents{{kind="out",output="{out}"}}': stats["totals"]["documents_out"],
            f'ray_curate_step_dropped{{fate="drop",output="{out}",reason="too_few_words",step="filter"}}': dropped,
            f'ray_curate_step_documents{{kind="in",output="{out}",step="filter"}}': 4}
    got: dict[str, float] = {}
    deadline = time.time() + 60
    while time.time() < deadline and len(got) < len(want):
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for line in body.splitlines():
            m = re.match(r"(ray_curate_\w+)\{(.*)\} (\S+)$", line)
            if not m:
                continue
            tags = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if tags.get("output") != out:
                continue
            keep = {k: v for k, v in tags.items() if k in ("kind", "output", "reason", "step", "fate")}
            name = m.group(1) + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(keep.items())) + "}"
            if name in want:
                got[name] = float(m.group(3))
        time.sleep(1)
    assert got == {k: float(v) for k, v in want.items()}


def test_partial_timing_is_flagged(tmp_path):
    """A run whose stats actor restarted says so on every view's header: its seconds may miss a few batches."""
    from curate.dashboard.run import Run
    from curate.dashboard.views import summary

    doc = {"status": "done", "steps": [], "elapsed_s": 1.0, "updated": "2026-01-01T00:00:00Z",
           "totals": {"balanced": True}, "timing": {"partial": True, "why": "curate's stats actor restarted 1 time(s)"}}
    (tmp_path / "stats.json").write_text(json.dumps(doc))
    assert any("timing figures are partial: curate's stats actor restarted" in f
               for f in summary(Run(str(tmp_path)), None)["flags"])
    doc["timing"] = {"partial": False}
    (tmp_path / "stats.json").write_text(json.dumps(doc))
    assert not any("timing" in f for f in summary(Run(str(tmp_path)), None)["flags"])
