"""`curate submit` and the job lifecycle against a real two-node Ray cluster and a real S3-compatible server.

One cluster (`curate.localcluster`: two `ray start` nodes with their own temp dirs, token auth, Jobs API on
127.0.0.1) and one moto S3 server (in this process, on 127.0.0.1) serve the whole module; both are stopped by the
module, the cluster by process id. The cluster's nodes get S3 credentials from their environment, as nodes with an
instance profile would; the endpoint comes from pipeline.yaml's storage_options.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, S3_CREDS, SAMPLE, s3_server

pytestmark = pytest.mark.slow

CREDS = S3_CREDS
BUCKET = "curate-test"
ADDED = "2026-01-01T00:00:00Z"
# stats.json and progress.jsonl hold timings, _run.json the input files' mtimes (the job's copy of the working dir
# is unpacked anew), logs/ray.log what Ray said; everything else must be the same bytes
TIMED = {"stats.json", "stats/progress.jsonl", "_run.json", "logs/ray.log"}


@pytest.fixture(scope="module")
def s3():
    with s3_server(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def cluster():
    from curate.localcluster import LocalCluster

    c = LocalCluster(nodes=2, cpus_per_node=1, env=CREDS).start()
    yield c
    c.stop()
    assert not c.pids()


@pytest.fixture(scope="module")
def project(tmp_path_factory, s3) -> Path:
    """A user's project folder: the sample pipeline writing to S3, and its local sample input."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(SAMPLE, root / "data" / "sample")
    cfg = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    cfg["output"].update({"added": ADDED, "storage_options": {"endpoint_url": s3}})
    (root / "pipeline.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    bad = {**cfg, "input": {**cfg["input"], "paths": ["data/missing/*.warc.gz"]}}
    (root / "bad.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    return root


def curate(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) \
        -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **CREDS, **(env or {})})


def auth(cluster) -> dict[str, str]:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster.token}


def s3fs_of(endpoint: str):
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, key=CREDS["AWS_ACCESS_KEY_ID"],
                             secret=CREDS["AWS_SECRET_ACCESS_KEY"], skip_instance_cache=True)


def job_id(stdout: str) -> str:
    return next(ln.split()[1] for ln in stdout.splitlines() if ln.startswith("job:"))


def test_submit_to_s3_equals_local_run(cluster, s3, project, tmp_path):
    sub = curate("submit", "pipeline.yaml", "--address", cluster.address, "-o", f"s3://{BUCKET}/run", "--wait",
                 cwd=project, env=auth(cluster))
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
    jid = job_id(sub.stdout)
    assert f"{cluster.address}/#/jobs/{jid}" in sub.stdout and f"s3://{BUCKET}/run" in sub.stdout
    assert "preflight: ok" in sub.stdout
    # the job's log, which --wait follows: curate's own lines (a plain run: header, table), none of Ray's executor
    assert f"curate: pipeline.yaml -> s3://{BUCKET}/run" in sub.stdout and "documents in 114 = out" in sub.stdout
    assert "streaming_executor" not in sub.stdout and "core_worker" not in sub.stdout
    st = curate("status", jid, "--address", cluster.address, cwd=project, env=auth(cluster))
    assert st.returncode == 0 and "SUCCEEDED" in st.stdout, st.stdout + st.stderr
    listed = curate("jobs", "--address", cluster.address, cwd=project, env=auth(cluster))
    assert jid in listed.stdout and f"s3://{BUCKET}/run" in listed.stdout

    local = tmp_path / "local"
    run = curate("run", "pipeline.yaml", "-o", str(local), "-q", cwd=project)
    assert run.returncode == 0, run.stderr[-3000:]
    fs = s3fs_of(s3)
    remote = {p[len(f"{BUCKET}/run/"):]: p for p in fs.find(f"{BUCKET}/run")}
    here = {str(p.relative_to(local)): p for p in local.rglob("*") if p.is_file()}
    assert set(remote) == set(here)
    assert any(k.startswith("documents/") for k in here) and "manifest.json" in here
    assert any(k.startswith("tokens/") for k in here) and any(k.startswith("stats/docs/") for k in here)
    assert not any(k.startswith("_work") for k in remote)  # scratch is spent once the run is done
    differ = [k for k in sorted(here) if k not in TIMED and fs.cat_file(remote[k]) != here[k].read_bytes()]
    assert differ == []
    run_there, run_here = json.loads(fs.cat_file(remote["_run.json"])), json.loads(here["_run.json"].read_text())
    assert run_there["config"] == run_here["config"]
    assert [f["url"] for f in run_there["inputs"]] == [f["url"] for f in run_here["inputs"]]
    stats = json.loads(fs.cat_file(remote["stats.json"]))
    assert stats["status"] == "done" and stats["totals"]["balanced"] and stats["cluster"]["nodes"] == 2
    seen = curate("inspect", f"s3://{BUCKET}/run", "-n", "1", cwd=project, env={"AWS_ENDPOINT_URL": s3})
    assert seen.returncode == 0 and "status: done" in seen.stdout and "\n--- " in seen.stdout, seen.stderr


def test_stop_leaves_no_half_written_part(cluster, s3, project):
    import pyarrow.parquet as pq

    out = f"s3://{BUCKET}/stopped"
    sub = curate("submit", "pipeline.yaml", "--address", cluster.address, "-o", out, cwd=project,
                 env=auth(cluster))
    assert sub.returncode == 0, sub.stderr
    jid = job_id(sub.stdout)
    fs = s3fs_of(s3)
    deadline = time.time() + 300
    while not fs.exists(f"{BUCKET}/stopped/stats.json"):  # the run is under way (past the preflight)
        assert time.time() < deadline, "the job never started writing"
        time.sleep(0.5)
        fs.invalidate_cache()
    stop = curate("stop", jid, "--address", cluster.address, cwd=project, env=auth(cluster))
    assert stop.returncode == 5 and "STOPPED" in stop.stdout, stop.stdout + stop.stderr
    st = curate("status", jid, "--address", cluster.address, cwd=project, env=auth(cluster))
    assert st.returncode == 5 and "STOPPED" in st.stdout
    fs.invalidate_cache()
    for path in fs.find(f"{BUCKET}/stopped"):
        name = path.rsplit("/", 1)[-1]
        assert not name.startswith(".tmp-"), path
        data = fs.cat_file(path)
        if name.endswith(".jsonl.gz"):
            lines = gzip.decompress(data).decode().splitlines()  # a truncated gzip raises here
            assert all(ln.startswith("{") and ln.endswith("}") for ln in lines)
        elif name.endswith(".parquet"):
            pq.read_table(io.BytesIO(data))


def test_bad_input_fails_with_one_line(cluster, project):
    sub = curate("submit", "bad.yaml", "--address", cluster.address, "-o", f"s3://{BUCKET}/bad", "--wait", "-q",
                 cwd=project, env=auth(cluster))
    assert sub.returncode == 4, sub.stdout + sub.stderr
    jid = job_id(sub.stdout)
    st = curate("status", jid, "--address", cluster.address, cwd=project, env=auth(cluster))
    assert st.returncode == 4 and "FAILED" in st.stdout
    line = [ln for ln in st.stdout.splitlines() if ln.startswith("error: ")]
    assert line == ["error: preflight: input data/missing/*.warc.gz: input path matches no file: "
                    "data/missing/*.warc.gz"], st.stdout
    logs = curate("logs", jid, "--address", cluster.address, cwd=project, env=auth(cluster))
    assert line[0] in logs.stdout and "Traceback" not in logs.stdout


def test_config_error_is_reported_before_submission(cluster, project):
    (project / "typo.yaml").write_text((project / "pipeline.yaml").read_text().replace("timeout_s:", "timeout:"))
    sub = curate("submit", "typo.yaml", "--address", cluster.address, cwd=project, env=auth(cluster))
    assert sub.returncode == 2 and "steps[3].timeout" in sub.stderr and "job:" not in sub.stdout


def test_nothing_listening_is_a_clear_error_fast(project):
    from curate.localcluster import free_port

    t = time.time()
    sub = curate("submit", "pipeline.yaml", "--address", f"http://127.0.0.1:{free_port()}", "-o",
                 f"s3://{BUCKET}/never", cwd=project)
    assert time.time() - t < 10
    assert sub.returncode == 6 and sub.stderr.startswith("error: cannot reach the Ray Jobs API"), sub.stderr
    assert len(sub.stderr.strip().splitlines()) == 1


def test_wrong_or_missing_token_is_an_auth_error(cluster, project):
    wrong = curate("jobs", "--address", cluster.address, cwd=project,
                   env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64})
    assert wrong.returncode == 6 and "Authentication failed" in wrong.stderr, wrong.stderr
    assert "RAY_AUTH_TOKEN" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    missing = curate("jobs", "--address", cluster.address, cwd=project, env={"RAY_AUTH_MODE": "disabled"})
    assert missing.returncode == 6 and "Authentication required" in missing.stderr, missing.stderr


def test_insecure_address_warning():
    from curate.cluster import insecure_warning

    assert insecure_warning("http://127.0.0.1:8265") is None
    assert insecure_warning("https://ray.example.org") is None
    assert "neither loopback nor HTTPS" in insecure_warning("http://10.0.0.5:8265")


# ------------------------------------------------------------------------ `python -m curate.localcluster` itself
def _localcluster(nodes: int) -> tuple[subprocess.Popen, str, str, str]:
    """Start the command-line tool; (process, temp dir, token, Jobs API address) once it says the cluster is up."""
    proc = subprocess.Popen([sys.executable, "-m", "curate.localcluster", "--nodes", str(nodes), "--cpus", "1"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if "Ctrl-C" in line:
            break
    text = "".join(seen)
    root = text.split("(temp dir ", 1)[1].split(")", 1)[0]
    token = text.split("RAY_AUTH_TOKEN=", 1)[1].split()[0]
    address = text.split("--address ", 1)[1].split()[0]
    return proc, root, token, address


def _gone(root: str, within_s: float = 60.0) -> set[int]:
    """The cluster's processes still there after waiting up to ``within_s`` for them to end."""
    from curate.localcluster import processes_naming

    deadline = time.time() + within_s
    while (left := processes_naming(root)) and time.time() < deadline:
        time.sleep(0.5)
    return left


def _kill(pids: set[int]) -> None:
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_submit_to_a_fresh_head_then_sigterm_stops_every_node(tmp_path):
    """`curate submit` the moment the tool says the cluster is up (the job agent may not be yet: submit waits for
    it), then `kill -TERM` the tool: no process of either `ray start --block` node remains."""
    import signal

    from curate.localcluster import processes_naming

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("".join(
        json.dumps({"id": str(i), "text": f"Sentence number {i} of a small test document. " * 20}) + "\n"
        for i in range(30)))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"input": {"paths": ["data/"]},
                                                         "output": {"path": "out", "added": ADDED},
                                                         "steps": [{"name": "langid"}]}))
    proc, root, token, address = _localcluster(nodes=2)
    try:
        sub = curate("submit", "tiny.yaml", "--address", address, "-o", str(tmp_path / "out"), "--wait",
                     cwd=tmp_path, env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
        assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
        assert "documents in 30 = out 30" in sub.stdout
        assert len(processes_naming(root)) > 2  # two nodes' gcs, raylets, agents...
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        left = _gone(root)
        assert not left, f"left running after SIGTERM: {sorted(left)}"
        assert not os.path.exists(root)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill(processes_naming(root))


def test_a_killed_localcluster_leaves_no_node():
    """SIGKILL leaves the tool no chance to clean up: its watchdog stops the nodes once it is gone."""
    from curate.localcluster import processes_naming

    proc, root, _token, _address = _localcluster(nodes=1)
    try:
        assert processes_naming(root)
        proc.kill()
        proc.wait()
        left = _gone(root)
        assert not left, f"left running after SIGKILL: {sorted(left)}"
    finally:
        _kill(processes_naming(root))


def test_submit_waits_for_the_job_agent():
    """The head's answer while its job agent is not up (HTTP 500, Ray's words) is waited out, bounded."""
    from curate.cluster import NO_AGENT, ClusterError, _submit_when_ready

    class FreshHead:  # what JobSubmissionClient.submit_job raises for that answer, `refusals` times, then the id
        def __init__(self, refusals: int):
            self.refusals, self.calls = refusals, 0

        def submit_job(self, **kwargs):
            self.calls += 1
            if self.calls <= self.refusals:
                raise RuntimeError(f"Request failed with status code 500: {NO_AGENT}, please try again later..")
            return "raysubmit_x"

    head = FreshHead(2)
    assert _submit_when_ready("http://h:8265", head, wait_s=30, entrypoint="x") == "raysubmit_x" and head.calls == 3
    with pytest.raises(ClusterError, match="job agent did not come up within 1 s"):
        _submit_when_ready("http://h:8265", FreshHead(10 ** 6), wait_s=1)
