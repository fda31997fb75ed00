"""Resume after `kill -9` of the driver, and after a full disk: real processes, real kills, no mocks.

The kills come from failpoints (curate/failpoints.py): the run itself sends SIGKILL to the driver at a named
point (after the n-th input checkpoint part, after a stage's marker), because a test polling from outside could
not hit "inside minhash_dedup, after signatures" reliably on a 20-second run. Every process a `curate run`
started is recorded while it runs and killed by pid afterwards (a SIGKILLed driver leaves its Ray behind).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO

SAMPLE = REPO / "data" / "sample"
STEPS = [{"name": "extract", "timeout_s": 60}, {"name": "langid"}, {"name": "quality_signals"},
         {"name": "minhash_dedup", "partitions": 2},
         {"name": "filter", "rules": [{"reason": "near_duplicate", "drop": "minhash_dedup__minhash__duplicate > 0"}]},
         {"name": "segment"},
         {"name": "shard", "tokens_per_shard": 5000, "writers": 3, "max_doc_tokens": 1024,
          "spans_attribute": "segment__sentences__spans"}]


def _config(tmp: Path, steps: list[dict] = STEPS, inputs: Path = SAMPLE, name: str = "p.yaml", **output) -> Path:
    cfg = {"input": {"paths": [str(inputs)], "docs_per_block": 8},
           "output": {"added": "2026-01-01T00:00:00Z", **output},
           "ray": {"num_cpus": 2}, "steps": steps}
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(cfg: Path, out: Path, *flags: str, failpoint: str | None = None) -> subprocess.CompletedProcess:
    """`curate run` in a child process; afterwards every process it started that is still alive is killed by pid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATE_FAILPOINT")}
    if failpoint:
        env["CURATE_FAILPOINT"] = failpoint
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(out), "-q", *flags],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        out_text, err_text = proc.communicate()
    finally:
        for child in seen.values():
            try:
                if child.is_running():  # is_running also checks the pid was not reused since
                    child.kill()
            except psutil.NoSuchProcess:
                pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_text, err_text)


def sums(out: Path) -> dict[str, str]:
    """Every output file's digest: documents, attributes, tokens, manifest, per-document stats, part markers."""
    skip = {"stats.json", "progress.jsonl", "_run.json", "ray.log"}
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in skip}


def _stats(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())


def _rows(stats: dict, step: str) -> int:
    return next(s["rows_processed"] for s in stats["steps"] if s["step"] == step)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    cfg = _config(tmp)
    r = run_cli(cfg, tmp / "out")
    assert r.returncode == 0, r.stderr[-3000:]
    stats = _stats(tmp / "out")
    assert stats["totals"]["balanced"] and stats["totals"]["parts"] >= 12
    return {"sums": sums(tmp / "out"), "stats": stats, "out": tmp / "out"}


def _kill_and_resume(tmp: Path, failpoint: str, steps: list[dict] = STEPS) -> tuple[Path, dict]:
    cfg = _config(tmp, steps)
    out = tmp / "out"
    killed = run_cli(cfg, out, failpoint=failpoint)
    assert killed.returncode == -9, f"the failpoint {failpoint} did not fire: rc {killed.returncode}\n" \
                                    f"{killed.stderr[-3000:]}"
    assert _stats(out)["status"] == "running"  # what a killed driver leaves: no 'done', no 'failed'
    # a kill during a write-then-rename leaves its temporary (it happened between write and rename in one run):
    # the resume removes such leftovers, or the output would not be an uninterrupted run's bytes
    for folder in (out, out / "_parts"):
        if folder.is_dir():
            (folder / ".tmp-0123456789abcdef-left-by-a-kill.json").write_bytes(b'{"half": ')
    resumed = run_cli(cfg, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stats = _stats(out)
    assert stats["status"] == "done" and stats["resume"]["resumed"]
    assert not (out / "_work").exists()
    return out, stats


def _same_as_clean(out: Path, stats: dict, clean: dict) -> None:
    assert sums(out) == clean["sums"]  # byte-identical: documents, attributes, tokens, manifest, doc stats
    t, c = stats["totals"], clean["stats"]["totals"]
    assert t["balanced"]
    for k in ("documents_in", "documents_out", "dropped", "errors", "parts", "characters_out"):
        assert t[k] == c[k], k  # every input document counted once: none lost, none twice
    assert stats["inputs"]["records_skipped"] == clean["stats"]["inputs"]["records_skipped"]
    assert stats["inputs"]["files_read"] == clean["stats"]["inputs"]["files_read"]


def test_kill_during_extraction_then_resume(clean, tmp_path):
    out, stats = _kill_and_resume(tmp_path, "minhash_dedup:input_part:4")
    _same_as_clean(out, stats, clean)
    reused = [x for x in stats["resume"]["checkpoints_reused"] if x.startswith("minhash_dedup:input_parts:")]
    assert reused and int(reused[0].rsplit(":", 1)[1]) >= 4
    # the parts the killed run had extracted were read back, not extracted again
    assert _rows(stats, "extract") < _rows(clean["stats"], "extract")


def test_kill_inside_minhash_after_signatures_then_resume(clean, tmp_path):
    out, stats = _kill_and_resume(tmp_path, "minhash_dedup:signatures")
    _same_as_clean(out, stats, clean)
    assert {"minhash_dedup:input", "minhash_dedup:signatures"} <= set(stats["resume"]["checkpoints_reused"])
    assert _rows(stats, "read") == _rows(stats, "extract") == _rows(stats, "langid") == 0  # nothing before it redone
    minhash = next(s for s in stats["steps"] if s["step"] == "minhash_dedup")
    assert minhash["info"]["documents"] == next(
        s for s in clean["stats"]["steps"] if s["step"] == "minhash_dedup")["info"]["documents"]


def test_kill_inside_shard_then_resume(clean, tmp_path):
    out, stats = _kill_and_resume(tmp_path, "shard:write-00000")
    _same_as_clean(out, stats, clean)
    assert {"shard:input", "shard:runs", "shard:assign", "shard:write-00000"} <= \
        set(stats["resume"]["checkpoints_reused"])
    assert _rows(stats, "extract") == _rows(stats, "segment") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["shards"] >= 3  # several writer groups, so some were redone and some not


def test_kill_while_writing_parts_then_resume(clean, tmp_path):
    out, stats = _kill_and_resume(tmp_path, "write:part:3")
    _same_as_clean(out, stats, clean)
    assert stats["resume"]["parts_reused"] >= 3
    assert _rows(stats, "write") < _rows(clean["stats"], "write")  # finished parts were not written again


def test_streaming_pipeline_resume_skips_finished_parts(tmp_path):
    """No whole-dataset step: the readers themselves skip the parts a killed run finished."""
    steps = STEPS[:3]
    first = run_cli(_config(tmp_path, steps, name="c.yaml"), tmp_path / "clean")
    assert first.returncode == 0, first.stderr[-3000:]
    out, stats = _kill_and_resume(tmp_path, "write:part:5", steps)
    assert sums(out) == sums(tmp_path / "clean")
    clean_stats = _stats(tmp_path / "clean")
    assert stats["totals"]["documents_in"] == clean_stats["totals"]["documents_in"] and stats["totals"]["balanced"]
    assert stats["resume"]["parts_reused"] >= 5
    assert _rows(stats, "extract") < _rows(clean_stats, "extract")


def test_resume_of_a_finished_run_does_nothing(clean, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(clean["out"], out)
    before = (out / "stats.json").read_bytes()
    r = run_cli(_config(tmp_path), out, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "stats.json").read_bytes() == before


def test_resume_refuses_a_changed_config_or_input(tmp_path):
    from curate.checkpoint import identity, save_run
    from curate.config import load_config
    from curate.readers import expand_paths, split_known
    from curate.runner import run_config

    inputs = tmp_path / "in"
    shutil.copytree(SAMPLE, inputs)
    cfg = _config(tmp_path, inputs=inputs)
    out = tmp_path / "out"
    files, _ = split_known(expand_paths([str(inputs)]), "auto")
    save_run(str(out), identity(run_config(load_config(cfg)), files, None))

    changed = [dict(s) for s in STEPS]
    changed[3]["threshold"] = 0.6
    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(_config(tmp_path, changed, inputs=inputs,
                        name="q.yaml")), "-o", str(out), "--resume"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "steps[3].threshold" in r.stderr and "Traceback" not in r.stderr

    with open(inputs / "jwarc_cc.warc.gz", "ab") as f:
        f.write(b"\0")
    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(out), "--resume"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "input changed" in r.stderr and "jwarc_cc.warc.gz" in r.stderr, r.stderr

    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(tmp_path / "none"),
                        "--resume"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_inputs_shipped_with_a_job_are_compared_by_content(tmp_path, monkeypatch):
    """A submitted job's working dir is unpacked anew on every cluster, with new modification times: a resume on
    a new cluster (the head was lost) compares those inputs by content, and still refuses a changed one."""
    import json as _json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    from curate.checkpoint import ResumeError, check_resume, identity, save_run

    shipped = tmp_path / "job"
    shutil.copytree(SAMPLE, shipped / "data")
    monkeypatch.chdir(shipped)
    monkeypatch.setenv(RAY_JOB_CONFIG_JSON_ENV_VAR, _json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg.zip"}}))
    files = [("data/jwarc_cc.warc.gz", "jwarc_cc.warc"), ("data/warcio_example.warc.gz", "warcio_example.warc")]
    first = identity({"steps": []}, files, None)
    assert all(len(f["sha256"]) == 64 for f in first["inputs"])
    save_run(str(tmp_path / "out"), first)
    for name in ("jwarc_cc.warc.gz", "warcio_example.warc.gz"):  # unpacked again: same bytes, new mtime
        os.utime(shipped / "data" / name, (time.time() + 100, time.time() + 100))
    check_resume(str(tmp_path / "out"), identity({"steps": []}, files, None))
    data = (shipped / "data" / "jwarc_cc.warc.gz").read_bytes()
    (shipped / "data" / "jwarc_cc.warc.gz").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size
    with pytest.raises(ResumeError, match=r"input changed: data/jwarc_cc.warc.gz \(sha256 "):
        check_resume(str(tmp_path / "out"), identity({"steps": []}, files, None))
    monkeypatch.delenv(RAY_JOB_CONFIG_JSON_ENV_VAR)  # a plain local run: modification times, as before
    assert "sha256" not in identity({"steps": []}, files, None)["inputs"][0]


def _mount_tmpfs(where: Path, size: int) -> bool:
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def _no_partial_files(out: Path) -> None:
    """Every file under a final name is whole; no temporary file is left behind."""
    for p in out.rglob("*"):
        if not p.is_file():
            continue
        assert not p.name.startswith(".tmp-"), p
        if p.name.endswith(".gz"):
            gzip.decompress(p.read_bytes())
        elif p.suffix == ".parquet":
            pq.read_table(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())


def test_full_disk_is_a_clear_error_and_resume_completes(clean, tmp_path):
    """A small tmpfs that the run fills for real (ENOSPC from the kernel), then grown as if space were freed.
    Where this machine cannot mount one, the failpoint raises the same ENOSPC in the output writes."""
    used = sum(p.stat().st_size for p in clean["out"].rglob("*") if p.is_file())
    mnt = tmp_path / "mnt"
    mounted = _mount_tmpfs(mnt, used // 3)
    try:
        out = mnt / "out"
        cfg = _config(tmp_path)
        r = run_cli(cfg, out, failpoint=None if mounted else "enospc:/documents/")
        assert r.returncode == 2, r.stderr[-3000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: No space left on device"), r.stderr[-3000:]
        assert "Traceback" not in r.stderr
        _no_partial_files(out)
        if mounted:
            subprocess.run(["mount", "-o", f"remount,size={used * 4}", str(mnt)], check=True)
        r = run_cli(cfg, out, "--resume")
        assert r.returncode == 0, r.stderr[-3000:]
        _same_as_clean(out, _stats(out), clean)
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)


def test_a_part_ray_cut_is_written_once_whole_and_identical(tmp_path):
    """Ray may cut a part's block (too big, or split for parallelism): the writer keeps the pieces and whichever
    call completes the part writes it, with the bytes the whole block would have given."""
    import pyarrow as pa

    from curate import schema
    from curate.writer import DolmaWriter

    n = 10
    rows = [{"id": f"d{i}", "text": f"text number {i} " * 5, "source": "web", "created": None,
             "metadata": "{}", schema.FILE: "in/a.jsonl", schema.ORD: i, schema.PART_ROWS: n if i < 20 else 3}
            for i in range(23)]
    table = schema.conform(pa.Table.from_pylist(rows))

    def write(out: Path, blocks: list[tuple[int, int]]) -> list[str]:
        w = DolmaWriter(str(out), "web", "gzip", "2026-01-01T00:00:00Z", {"in/a.jsonl": "a"}, docs_per_part=n)
        parts = []
        for lo, hi in blocks:
            parts += w(table.slice(lo, hi - lo)).column("part").to_pylist()
        parts += [s["part"] for s in w.finish_fragments(partial=False)]
        return parts

    whole = write(tmp_path / "whole", [(0, 23)])
    cut = write(tmp_path / "cut", [(0, 4), (17, 21), (4, 13), (21, 23), (13, 17)])
    assert sorted(whole) == sorted(cut) == ["a-000000", "a-000010", "a-000020"]
    assert sums(tmp_path / "whole") == {k: v for k, v in sums(tmp_path / "cut").items() if "_fragments" not in k}
