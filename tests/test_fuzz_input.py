"""Corrupted input never stops a run: seeded byte flips, truncations and splices of real WARC files and of
jsonl / jsonl.gz / jsonl.zst / parquet inputs. Every file reads to its end without an exception escaping, every
unreadable part is an error row naming its file, and a whole pipeline over corrupted copies completes balanced."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ENGLISH, SAMPLE, write_jsonl
from curate import schema
from curate.config import InputSpec, parse_config
from curate.readers import read_file
from curate.runner import run_pipeline

SEEDS = range(6)
WARCS = ["dolma_warc_sample-0000.warc.gz", "resiliparse_warcfile.warc.gz", "warcio_example.warc.gz",
         "iawebcommons_text-extraction-test.warc", "whirlwind_whirlwind.warc.wet.gz", "jwarc_cc.warc.gz"]


def corrupt(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """One of: a few flipped bytes, a truncation, a splice of another file's bytes, or all three."""
    kind = rng.choice(["flip", "truncate", "splice", "all"])
    out = bytearray(data)
    if kind in ("flip", "all"):
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] ^= rng.randint(1, 255)
    if kind in ("splice", "all"):
        a = rng.randrange(len(other))
        piece = other[a:a + rng.randint(1, 4096)]
        at = rng.randrange(len(out))
        out[at:at] = piece
    if kind in ("truncate", "all"):
        out = out[:rng.randrange(1, len(out))]
    return bytes(out)


def _inputs(d: Path) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    docs = [{"id": f"d{i}", "text": " ".join(ENGLISH[i % 8:] + ENGLISH[:i % 8]), "source": "x"} for i in range(40)]
    files = [write_jsonl(d / "a.jsonl", docs), write_jsonl(d / "b.jsonl.gz", docs, compression="gz"),
             write_jsonl(d / "c.jsonl.zst", docs, compression="zst")]
    pq.write_table(pa.Table.from_pylist(docs), d / "e.parquet")
    return files + [d / "e.parquet"] + [SAMPLE / n for n in WARCS]


def _read_all(path: Path) -> list[dict]:
    spec = InputSpec(paths=[str(path)], docs_per_block=16)
    return [r for block in read_file(str(path), spec) for r in block.to_pylist()]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_corrupted_file_reads_to_its_end(tmp_path, seed):
    rng = random.Random(seed)
    originals = _inputs(tmp_path / "orig")
    for src in originals:
        data, other = src.read_bytes(), rng.choice(originals).read_bytes()
        bad = tmp_path / f"bad-{src.name}"
        bad.write_bytes(corrupt(data, rng, other))
        rows = _read_all(bad)  # must not raise, whatever the bytes
        assert all(r["id"] for r in rows)  # (ids may repeat: flipped bytes can turn one stored id into another)
        for r in rows:
            assert r[schema.FILE] == str(bad)
            if r[schema.FATE] == schema.ERROR:
                assert r[schema.REASON] and r[schema.DETAIL], r
            else:
                assert r["text"] is not None or r[schema.RAW] is not None or r[schema.FATE] == schema.DROP, r


def test_a_damaged_warc_is_read_past_the_damage(tmp_path):
    """Resynchronisation: garbage spliced between two gzip members costs one error; the records after it are
    read, so the damaged file yields every document the intact one does."""
    src = SAMPLE / "dolma_warc_sample-0000.warc.gz"
    data = src.read_bytes()
    good = [r for r in _read_all(src) if r[schema.FATE] != schema.ERROR]
    # cut at a record boundary a third of the way in (the offset of a document record) and splice garbage there
    cut = json.loads(good[len(good) // 3]["metadata"])["warc_offset"]
    bad = tmp_path / "spliced.warc.gz"
    bad.write_bytes(data[:cut] + random.Random(0).randbytes(3000) + data[cut:])
    rows = _read_all(bad)
    errors = [r for r in rows if r[schema.FATE] == schema.ERROR]
    assert len(errors) == 1 and errors[0][schema.REASON] == "warc_parse_error", errors
    assert json.loads(errors[0]["metadata"])["warc_file"] == str(bad)
    assert [r["id"] for r in rows if r[schema.FATE] != schema.ERROR] == [r["id"] for r in good]


def test_a_pipeline_over_corrupted_copies_completes_balanced(ray_session, tmp_path):
    rng = random.Random(42)
    d = tmp_path / "bad"
    d.mkdir()
    originals = _inputs(tmp_path / "orig")
    for src in originals:
        (d / src.name).write_bytes(corrupt(src.read_bytes(), rng, rng.choice(originals).read_bytes()))
    cfg = parse_config({"input": {"paths": [str(d)]},
                        "steps": [{"name": "extract", "timeout_s": 60}, {"name": "langid"},
                                  {"name": "quality_signals"}, {"name": "minhash_dedup", "partitions": 2},
                                  {"name": "segment"}]})
    stats = run_pipeline(cfg, str(tmp_path / "out"), progress=False)
    assert stats["status"] == "done" and stats["totals"]["balanced"], stats["totals"]
    assert stats["totals"]["errors"] >= 1
    per_doc = pq.read_table(tmp_path / "out" / "stats" / "docs").to_pylist()
    assert len(per_doc) == stats["totals"]["documents_in"]
    assert all(r["file"] for r in per_doc if r["fate"] == "error")
