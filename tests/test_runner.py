"""Runner, readers and writer: scheduling variants give the same documents; formats and codecs round-trip."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ENGLISH, REPO, SAMPLE, read_zst_jsonl, write_jsonl
from curate.config import parse_config
from curate.readers import expand_paths, normalize_date
from curate.runner import run_pipeline

FILES = [str(SAMPLE / n) for n in ("resiliparse_warcfile.warc.gz", "dolma_warc_sample-0000.warc.gz",
                                   "whirlwind_whirlwind.warc.wet.gz")]


def _docs(out: Path, source: str = "web") -> dict[str, dict]:
    docs = {}
    for f in sorted((out / "documents" / source).glob("*.jsonl.gz")):
        for d in read_zst_jsonl(f):
            docs[d["id"]] = d
    return docs


def _cfg(paths, steps=None, **inp) -> dict:
    # a generous deadline: these tests compare outputs, which must not depend on how loaded the machine is
    # a fixed `added`: its default, the run's start, differs between the runs these tests compare
    return {"input": {"paths": paths, **inp}, "output": {"added": "2026-01-01T00:00:00Z"},
            "steps": steps or [{"name": "extract", "timeout_s": 120}, {"name": "langid"}, {"name": "quality_signals"}]}


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "o"
    stats = run_pipeline(parse_config(_cfg(FILES)), str(out), progress=False)
    return out, stats


def test_many_small_blocks_give_the_same_documents(reference, tmp_path):
    out, stats = reference
    out2 = tmp_path / "o"
    raw = _cfg(FILES, docs_per_block=3)
    raw["ray"] = {"target_max_block_bytes": 20_000}
    stats2 = run_pipeline(parse_config(raw), str(out2), progress=False)
    assert stats2["totals"]["parts"] >= 8  # the distributed path: many blocks, many parts
    assert _docs(out2) == _docs(out)
    assert stats2["totals"]["documents_out"] == stats["totals"]["documents_out"]


def test_actor_pool_step_gives_the_same_documents(reference, tmp_path):
    out, _ = reference
    steps = [{"name": "extract", "timeout_s": 120}, {"name": "langid", "resources": {"compute": "actors", "concurrency": 1,
                                                                   "num_cpus": 0.5}},
             {"name": "quality_signals"}]
    out2 = tmp_path / "o"
    run_pipeline(parse_config(_cfg(FILES, steps)), str(out2), progress=False)
    assert _docs(out2) == _docs(out)
    attrs = sorted((out2 / "attributes" / "langid" / "web").glob("*.jsonl.gz"))
    assert attrs


def test_limit_takes_the_first_documents_deterministically(ray_session, tmp_path):
    a = run_pipeline(parse_config(_cfg(FILES)), str(tmp_path / "a"), limit=10, progress=False)
    b = run_pipeline(parse_config(_cfg(FILES)), str(tmp_path / "b"), limit=10, progress=False)
    assert b["totals"] == {**a["totals"], "docs_per_s": b["totals"]["docs_per_s"]}
    assert a["totals"]["documents_in"] == 10 and a["totals"]["balanced"]
    assert _docs(tmp_path / "a") == _docs(tmp_path / "b")


def test_jsonl_gz_and_parquet_inputs_keep_ids_and_metadata(ray_session, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    text = " ".join(ENGLISH)
    write_jsonl(d / "a.jsonl.gz", [{"id": "a1", "text": text, "source": "books", "created": "2020-01-01",
                                    "metadata": {"lang": "en"}}], compression="gz")
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": [text, None]}), d / "b.parquet")
    out = tmp_path / "out"
    stats = run_pipeline(parse_config(_cfg([str(d)], [{"name": "langid"}], source="mixed")), str(out),
                         progress=False)
    docs = _docs(out, "mixed")
    assert set(docs) == {"a1", "p1"}
    assert docs["a1"]["source"] == "books" and docs["a1"]["created"] == "2020-01-01T00:00:00Z"
    assert docs["a1"]["metadata"]["lang"] == "en" and docs["a1"]["metadata"]["input_line"] == 1
    assert docs["p1"]["source"] == "mixed"
    assert stats["steps"][0]["errors"] == {"missing_text": 1}


def test_gzip_output_is_deterministic_and_readable(ray_session, tmp_path):
    raw = _cfg([FILES[0]], [{"name": "extract"}, {"name": "langid"}])
    raw["output"] = {"compression": "gzip", "added": "2026-01-01T00:00:00Z"}
    cfg = parse_config(raw)
    run_pipeline(cfg, str(tmp_path / "a"), progress=False)
    run_pipeline(cfg, str(tmp_path / "b"), progress=False)
    fa = sorted((tmp_path / "a" / "documents").rglob("*.jsonl.gz"))
    assert fa
    for f in fa:
        g = tmp_path / "b" / f.relative_to(tmp_path / "a")
        assert f.read_bytes() == g.read_bytes()
        docs = [json.loads(x) for x in gzip.decompress(f.read_bytes()).decode().splitlines()]
        assert all(d["added"] == "2026-01-01T00:00:00Z" and list(d)[:3] == ["id", "text", "source"] for d in docs)
        assert f.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header without a timestamp (ISA-L writes it, mtime 0)


def test_op_resource_reservation_follows_the_config_and_where_ray_runs():
    from curate.runner import reserve_op_resources

    def cfg(**ray):
        return parse_config({**_cfg(FILES), "ray": ray})

    # a local Ray: on while reading and the batch steps stream, off from a materialised barrier on
    assert reserve_op_resources(cfg(), None, materialized=False) is True
    assert reserve_op_resources(cfg(), None, materialized=True) is False
    assert reserve_op_resources(cfg(), "auto", materialized=True) is True  # a cluster: Ray's default
    assert reserve_op_resources(cfg(address="ray://head:10001"), None, materialized=True) is True
    assert reserve_op_resources(cfg(op_resource_reservation=True), None, materialized=True) is True
    assert reserve_op_resources(cfg(op_resource_reservation=False), None, materialized=False) is False


def test_the_plan_after_a_barrier_runs_without_reservation(ray_session, tmp_path):
    """build_plan sets the reservation on the datasets that start from a whole-dataset step's materialised input
    (they share one context), not on the global context the readers copy."""
    from ray.data import DataContext

    from curate.runner import build_plan

    raw = _cfg([FILES[0]], [{"name": "extract"}, {"name": "exact_dedup"}])
    raw["output"]["checkpoints"] = False
    cfg = parse_config(raw)
    files = [(FILES[0], "f0")]
    before = DataContext.get_current().op_resource_reservation_enabled
    ds = build_plan(cfg, str(tmp_path / "o"), None, files, reserve_after_barrier=False)
    assert ds.context.op_resource_reservation_enabled is False
    assert DataContext.get_current().op_resource_reservation_enabled is before
    ds = build_plan(cfg, str(tmp_path / "p"), None, files, reserve_after_barrier=True)
    assert ds.context.op_resource_reservation_enabled is True


def test_expand_paths_keys_are_unique_and_readable(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for sub in ("x", "y"):
        (tmp_path / sub / "a.warc.gz").write_bytes(b"")
    (tmp_path / "x" / "a.jsonl.gz").write_bytes(b"")
    (tmp_path / "x" / "a.jsonl.zst").write_bytes(b"")
    files = expand_paths([str(tmp_path)])
    keys = [k for _, k in files]
    assert len(set(keys)) == len(keys) == 4
    assert "x/a.warc" in keys and "y/a.warc" in keys


def test_normalize_date():
    assert normalize_date("2016-10-17T14:57:38Z") == "2016-10-17T14:57:38Z"
    assert normalize_date("2008-10-29T05:21:46-0700") == "2008-10-29T12:21:46Z"
    assert normalize_date("2008-10-294T05:21:46-0700") is None  # ClueWeb quirk: no date (metadata warc_date null)
    assert normalize_date("20080101120000") == "2008-01-01T12:00:00Z"


def test_stats_move_while_a_whole_dataset_step_runs(tmp_path):
    """Poll stats.json of a real `curate run` (dedup materialises the corpus before any part is written)."""
    import subprocess
    import sys
    import time

    import yaml

    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"input": {"paths": FILES}, "steps": [
        {"name": "extract"}, {"name": "langid"}, {"name": "exact_dedup"}, {"name": "minhash_dedup"}]}))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(cfg), "-o", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen_live = False
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        try:
            s = json.loads((out / "stats.json").read_text())
        except (OSError, ValueError):
            s = None
        if s and s["status"] == "running" and s["totals"]["parts"] == 0 and \
                any(st.get("rows_processed", 0) > 0 for st in s["steps"]):
            seen_live = True
        time.sleep(0.3)
    assert proc.wait(timeout=60) == 0
    assert seen_live, "stats.json did not move before the first part was written"
    assert json.loads((out / "stats.json").read_text())["status"] == "done"
    assert not (out / "_work").exists()  # scratch of the dedup steps is removed after success


def test_a_failure_while_planning_is_recorded(ray_session, tmp_path):
    cfg = parse_config({"input": {"paths": [FILES[2]]}, "steps": [{"name": "minhash_dedup"}]})
    with pytest.raises(OSError):  # the index to dedup against is missing: found only while planning
        run_pipeline(cfg.model_copy(update={"steps": [cfg.steps[0].model_copy(update={
            "params": cfg.steps[0].params.model_copy(update={"against": [str(tmp_path / "gone")]})})]}),
            str(tmp_path / "o"), progress=False)
    assert json.loads((tmp_path / "o" / "stats.json").read_text())["status"] == "failed"


def test_a_missing_tokenizer_is_a_config_error(tmp_path):
    from curate.config import ConfigError

    with pytest.raises(FileNotFoundError, match="missing.json"):
        parse_config({"input": {"paths": [FILES[2]]}, "steps": [
            {"name": "shard", "tokenizer": f"hf:{tmp_path / 'missing.json'}"}]})
    with pytest.raises(ConfigError, match="output.added"):
        parse_config({"input": {"paths": [FILES[2]]}, "output": {"added": "yesterday"}, "steps": []})


def test_task_steps_before_an_actor_step_run_on_every_core(ray_session, tmp_path):
    """Issue 20: Ray fuses read -> extract -> ... into the actor step; the pool must not serialise them."""
    files = [str(p) for p in sorted(SAMPLE.glob("*.warc.gz"))]
    steps = [{"name": "extract", "timeout_s": 120}, {"name": "langid"}, {"name": "quality_signals"},
             {"name": "preselect"}]  # preselect: an actors step by default, as in pipeline.yaml
    raw = _cfg(files, steps, docs_per_block=8)
    raw["ray"] = {"target_max_block_bytes": 50_000}
    stats = run_pipeline(parse_config(raw), str(tmp_path / "o"), progress=False)
    by = {s["step"]: s for s in stats["steps"]}
    assert stats["cluster"]["cpus"] == 2
    for step in ("extract", "langid", "quality_signals", "preselect"):
        assert by[step]["workers"] >= 2, (step, by[step])
        assert by[step]["wall_s"] > 0 and by[step]["parallelism"] is not None


def test_parallelism_warning_names_a_serialised_heavy_step():
    from curate.stats import parallelism_warnings

    def stats(par, workers):
        return {"cluster": {"cpus": 2}, "elapsed_s": 100.0, "steps": [
            {"step": "extract", "seconds": 90.0, "wall_s": 90.0 / par, "workers": workers, "batches": 20,
             "parallelism": par},
            {"step": "langid", "seconds": 2.0, "wall_s": 90.0, "workers": workers, "batches": 20,
             "parallelism": 0.02}]}

    (line,) = parallelism_warnings(stats(1.0, 1))
    assert "extract" in line and "parallelism 1.00" in line
    assert parallelism_warnings(stats(1.8, 2)) == []


@pytest.mark.slow
def test_limit_with_an_actor_step_does_not_deadlock(tmp_path):
    """`--limit` keeps reads from fusing into the first step; with the default pipeline's actor steps holding every
    CPU, reads that reserved one waited forever (the whole sample pipeline hung on 2 cores)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", "pipeline.yaml", "-o", str(tmp_path / "o"),
                        "--limit", "30", "-q"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["totals"]["documents_in"] == 30 and stats["totals"]["balanced"]


END_LOCAL_RAY = r'''
import json, os, sys, time
import psutil
import ray
from curate.runner import end_local_ray

ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker process exists
time.sleep(1)  # the raylet's agents are up
with open(sys.argv[1], "w") as f:
    json.dump([[p.pid, p.create_time()] for p in psutil.Process().children(recursive=True)], f)
assert end_local_ray()
os._exit(0)
'''


def test_ending_a_local_ray_ends_every_process_it_started(tmp_path):
    """`curate run` ends its local Ray by SIGKILL: the raylet's own children (workers, agents) must go too, not
    linger for seconds sharing the CPUs with the next command."""
    import subprocess
    import sys
    import time

    import psutil

    pids_file = tmp_path / "pids.json"
    subprocess.run([sys.executable, "-c", END_LOCAL_RAY, str(pids_file)], check=True, timeout=120)
    started = json.loads(pids_file.read_text())
    assert len(started) >= 4  # GCS, raylet, a worker, the agents ...

    def alive() -> list[psutil.Process]:
        out = []
        for pid, created in started:
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:  # the same process
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    deadline = time.time() + 3
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    left, names = alive(), []
    for p in left:  # a failure leaves nothing behind either
        try:
            names.append(p.name())
            p.kill()
        except psutil.Error:
            pass
    assert not left, names


WORKER_KEPT = r'''
import os, sys, time
import ray
from curate.config import parse_config
from curate.runner import end_local_ray, init_ray

init_ray(parse_config({"input": {"paths": ["x.jsonl"]}, "ray": {"num_cpus": 1},
                       "steps": [{"name": "langid"}]}), None, quiet=True)
pid = ray.remote(lambda: os.getpid())
before = ray.get(pid.remote())

@ray.remote(num_cpus=1)
class Busy:  # holds the only CPU, as an actor step's pool does: the task worker above sits idle meanwhile
    def wait(self, s):
        time.sleep(s)

busy = Busy.remote()
ray.get(busy.wait.remote(3.0))
ray.kill(busy)
after = ray.get(pid.remote())
print("same worker:", before == after, flush=True)
end_local_ray()
os._exit(0)
'''


def test_a_local_ray_keeps_task_workers_through_an_actor_step():
    """The task worker idle while an actor held the CPUs is the one that runs the next task (Ray's default ends it
    after 1 s idle, so every task after an actor step waited for a new worker process to start)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", WORKER_KEPT], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "same worker: True" in res.stdout, res.stdout[-2000:]
