"""Shared fixtures: one real local Ray for the session, and builders for real WARC/jsonl inputs.

Bad-input WARCs are written with warcio (the same library real crawlers' files are read with), so every case is
a real file the reader meets exactly as it would on a crawl, not a mocked record.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"

os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# what the tests' S3 server (moto) and the nodes of their clusters take as credentials
S3_CREDS = {"AWS_ACCESS_KEY_ID": "curate-test", "AWS_SECRET_ACCESS_KEY": "curate-test",
            "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server(bucket: str):
    """A real S3-compatible server (moto's, in this process, on 127.0.0.1) with ``bucket`` made: its endpoint
    URL. Stopped on exit."""
    import logging

    from moto.server import ThreadedMotoServer

    from curate.localcluster import free_port

    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_CREDS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_CREDS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray


def warc_record(writer, uri: str, body: bytes, content_type: str | None = "text/html; charset=utf-8",
                status: str = "200 OK", rtype: str = "response"):
    from warcio.statusandheaders import StatusAndHeaders

    headers = [("Content-Type", content_type)] if content_type else []
    http = StatusAndHeaders(status, headers, protocol="HTTP/1.1") if rtype == "response" else None
    warc_headers = None
    if rtype == "resource" and content_type:
        warc_headers = StatusAndHeaders("", [("Content-Type", content_type)], protocol="WARC/1.0")
    return writer.create_warc_record(uri, rtype, payload=io.BytesIO(body), http_headers=http,
                                     warc_headers=warc_headers)


def write_warc(path: Path, records: list[tuple], gz: bool = True) -> Path:
    """records: (uri, body, content_type[, status]) tuples, or raw bytes to splice in as they are."""
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for rec in records:
        if isinstance(rec, bytes):
            buf.write(gzip.compress(rec, mtime=0) if gz else rec)
            continue
        uri, body, ctype, *rest = rec
        writer.write_record(warc_record(writer, uri, body, ctype, *(rest or [])))
    path.write_bytes(buf.getvalue())
    return path


ARTICLE = (
    "<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a> | <a href='/about'>About</a></nav>"
    "<article><h1>{title}</h1>{paras}</article><footer>Copyright 2024. All rights reserved.</footer></body></html>"
)


def article(title: str, sentences: list[str]) -> str:
    paras = "".join(f"<p>{' '.join(sentences[i:i + 4])}</p>" for i in range(0, len(sentences), 4))
    return ARTICLE.format(title=title, paras=paras)


ENGLISH = [
    "The river runs through the old town and past the mill that was built in the eighteenth century.",
    "Local farmers bring their produce to the market every Saturday morning, and the square fills with people.",
    "In the winter the water rises and the lower streets are sometimes flooded for several days.",
    "The town council has discussed building a new bridge for many years, but the cost has always been too high.",
    "Visitors often stop at the small museum, which has a collection of tools used by the millers.",
    "A path along the bank leads to the next village, about six kilometres to the north.",
    "Birds nest in the reeds near the weir, and in spring the meadows are full of wild flowers.",
    "The school was moved to a larger building in 1962, when the number of children grew quickly.",
]


def write_jsonl(path: Path, lines: list[object | str], compression: str | None = None) -> Path:
    text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines).encode()
    if compression == "gz":
        text = gzip.compress(text, mtime=0)
    elif compression == "zst":
        import zstandard

        text = zstandard.ZstdCompressor().compress(text)
    path.write_bytes(text)
    return path


@pytest.fixture()
def sample_copy(tmp_path: Path) -> Path:
    d = tmp_path / "sample"
    shutil.copytree(SAMPLE, d)
    return d


def read_zst_jsonl(path: Path) -> list[dict]:
    from curate.writer import read_jsonl

    return read_jsonl(path)


def sample_responses(html_only: bool, pattern: str = "*.warc*"):
    """(url, content type, body) of every HTTP 200 response in the bundled sample (the clipped file excluded)."""
    from warcio.archiveiterator import ArchiveIterator

    for f in sorted(SAMPLE.glob(pattern)):
        if "clipped" in f.name:
            continue
        with open(f, "rb") as fh:
            for r in ArchiveIterator(fh):
                if r.rec_type != "response" or not r.http_headers or r.http_headers.get_statuscode() != "200":
                    continue
                ctype = r.http_headers.get_header("Content-Type")
                if html_only and "html" not in (ctype or ""):
                    continue
                yield r.rec_headers.get_header("WARC-Target-URI"), ctype, r.content_stream().read()
