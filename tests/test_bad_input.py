"""Each kind of bad input yields a counted drop or error with a reason, and the run completes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ENGLISH, SAMPLE, article, write_jsonl, write_warc
from curate.config import parse_config
from curate.runner import run_pipeline

GOOD = article("A good page", ENGLISH * 3).encode()


def _config(paths: list[str], **extract) -> dict:
    return {
        "input": {"paths": paths, "source": "test", "max_record_bytes": 20_000_000},
        "steps": [
            {"name": "extract", "timeout_s": extract.pop("timeout_s", 10), **extract},
            {"name": "langid"},
            {"name": "quality_signals"},
        ],
    }


def _by_id(out: Path) -> dict[str, dict]:
    t = pq.read_table(out / "stats" / "docs")
    return {(u or i): r for u, i, r in zip(t.column("url").to_pylist(), t.column("id").to_pylist(), t.to_pylist())}


@pytest.fixture(scope="module")
def bad_run(ray_session, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    latin = article("Café crème", ["Le café crème coûte deux euros à la gare, près du marché."] * 12)
    slow = "<html><body>" + "".join(f"<p>paragraph {i} with a few words in it</p>" for i in range(100000)) + \
        "</body></html>"
    write_warc(d / "cases.warc.gz", [
        ("http://ok/", GOOD, "text/html; charset=utf-8"),
        ("http://latin1/", latin.encode("cp1252"), "text/html; charset=windows-1252"),
        # mislabelled: header says utf-8, bytes are cp1252 (strict utf-8 fails, meta/detection must decide)
        ("http://mislabelled/", latin.encode("cp1252"), "text/html; charset=utf-8"),
        ("http://binary/", bytes(range(256)) * 64, "text/html"),
        ("http://image/", b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000, "image/png"),
        ("http://pdf/", b"%PDF-1.4 not html", "application/pdf"),
        ("http://empty/", b"", "text/html"),
        ("http://whitespace/", b"<html><body>   </body></html>", "text/html"),
        ("http://redirect/", b"", "text/html", "301 Moved Permanently"),
        ("http://huge/", b"<html><body>" + b"<p>big page words</p>" * 2_500_000 + b"</body></html>", "text/html"),
        ("http://slow/", slow.encode(), "text/html"),
        # a header block warcio cannot parse, then a good record after it
        b"WARC/1.0\r\nThis is: not\r\ngarbage line without colon\r\n\r\n",
        ("http://after-garbage/", GOOD, "text/html; charset=utf-8"),
    ])
    # a truncated gzip: cut a valid single-record file in the middle
    full = write_warc(d / "tmp.warc.gz", [("http://cut/", GOOD * 20, "text/html")]).read_bytes()
    (d / "truncated.warc.gz").write_bytes(full[: len(full) // 2])
    (d / "tmp.warc.gz").unlink()
    (d / "not-a-warc.warc.gz").write_bytes(b"this is not gzip and not a warc at all\n" * 10)
    write_jsonl(d / "docs.jsonl.zst", [{"id": "j1", "text": " ".join(ENGLISH), "source": "x"}, "{not json",
                                       {"id": "j3", "no_text": True}, {"id": "j4", "text": "short"}],
                compression="zst")
    # the slow page needs ~10 s; 4 s leaves normal pages room on a loaded machine (1 s made them time out)
    cfg = parse_config(_config([str(d)], timeout_s=4.0, max_bytes=5_000_000))
    out = d / "out"
    stats = run_pipeline(cfg, str(out), progress=False)
    return stats, out


def test_run_completes_and_balances(bad_run):
    stats, _ = bad_run
    assert stats["status"] == "done" and stats["totals"]["balanced"]


@pytest.mark.parametrize("url,fate,step,reason", [
    ("http://ok/", "kept", None, None),
    ("http://latin1/", "kept", None, None),
    ("http://mislabelled/", "kept", None, None),
    ("http://binary/", "drop", "extract", "binary_body"),
    ("http://image/", "drop", "extract", "binary_body"),
    ("http://pdf/", "drop", "extract", "not_html"),
    ("http://empty/", "drop", "extract", "empty_page"),
    ("http://whitespace/", "drop", "extract", "no_text_extracted"),
    ("http://redirect/", "drop", "read", "http_status"),
    ("http://huge/", "drop", "read", "too_large"),
    ("http://slow/", "error", "extract", "extract_timeout"),
    ("http://after-garbage/", "kept", None, None),
])
def test_each_case_has_its_fate(bad_run, url, fate, step, reason):
    _, out = bad_run
    row = _by_id(out)[url]
    assert (row["fate"], row["step"], row["reason"]) == (fate, step, reason)


def test_decoding_of_declared_and_mislabelled_charsets(bad_run):
    _, out = bad_run
    from conftest import read_zst_jsonl

    docs = {d["metadata"].get("url"): d for f in (out / "documents" / "test").glob("*.jsonl.gz")
            for d in read_zst_jsonl(f)}
    for url in ("http://latin1/", "http://mislabelled/"):
        assert "Le café crème coûte deux euros" in docs[url]["text"]
    assert docs["http://latin1/"]["metadata"]["charset_source"] == "http_header"
    assert docs["http://mislabelled/"]["metadata"]["charset_source"] != "http_header"


def test_file_level_failures_are_one_counted_error_each(bad_run):
    stats, out = bad_run
    t = pq.read_table(out / "stats" / "docs").to_pylist()
    reasons = {(r["file"].rsplit("/", 1)[-1], r["reason"]) for r in t if r["fate"] == "error"}
    assert ("cases.warc.gz", "malformed_record") in reasons
    assert any(f == "truncated.warc.gz" and r in ("truncated_record", "warc_parse_error") for f, r in reasons)
    assert ("not-a-warc.warc.gz", "warc_parse_error") in reasons
    assert ("docs.jsonl.zst", "bad_json") in reasons
    assert ("docs.jsonl.zst", "missing_text") in reasons
    read = stats["steps"][0]
    assert read["errors"]["bad_json"] == 1 and read["errors"]["missing_text"] == 1


def test_jsonl_documents_pass_through_extract(bad_run):
    _, out = bad_run
    row = [r for r in pq.read_table(out / "stats" / "docs").to_pylist() if r["id"] == "j1"][0]
    assert row["fate"] == "kept" and row["language"] == "en"


def test_bundled_truncated_gzip_is_counted(ray_session, tmp_path):
    cfg = parse_config(_config([str(SAMPLE / "resiliparse_clipped.warc.gz")]))
    stats = run_pipeline(cfg, str(tmp_path / "o"), progress=False)
    assert stats["steps"][0]["errors"] == {"truncated_record": 1}
    assert stats["totals"]["balanced"]


def test_stats_json_is_valid_while_and_after_running(bad_run):
    _, out = bad_run
    lines = (out / "stats" / "progress.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    assert json.loads(lines[0])["status"] == "running" and json.loads(lines[-1])["status"] == "done"
