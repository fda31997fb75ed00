"""A throwaway multi-node Ray cluster on this machine: to try `curate submit` before a real cluster, and for the
cluster tests and benchmark.

    python -m curate.localcluster --nodes 2 --cpus 1     # prints the address and token; Ctrl-C stops it

Each node is `ray start --block` in its own session with its own temp dir (as separate machines would have), token
authentication as Ray 2.60 sets it up (``RAY_AUTH_MODE=token``, a fresh ``RAY_AUTH_TOKEN``), and the dashboard and
Jobs API on 127.0.0.1 only. Ray's own gRPC servers (GCS, raylets) listen on the node's address with no option to
narrow that; the token guards them. `stop()` ends exactly the processes this cluster started: the process tree of
each `ray start`, and anything whose command line names this cluster's temp dir — never `ray stop`, which ends
every Ray process of the machine.

The nodes live in sessions of their own, so nothing ends them when their owner goes unless the owner does. The
command-line tool stops them on SIGINT, SIGTERM and SIGHUP; for an owner that dies without running any code (SIGKILL,
the OOM killer) a watchdog process, started with the cluster in a session of its own, polls the owner's pid and
stops the nodes the same way once it is gone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, env: dict[str, str] | None = None,
                 root: str | None = None):
        self.nodes, self.cpus = nodes, cpus_per_node
        # short: Ray's unix socket paths live under the temp dir and must stay under 107 bytes
        self.root = Path(root or tempfile.mkdtemp(prefix="crc-", dir="/tmp"))
        self.token = secrets.token_hex(32)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        bindir = os.path.dirname(sys.executable)
        self.env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                    "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.procs: list[subprocess.Popen] = []
        self.lost: set[int] = set()  # nodes killed on purpose (`kill_node`)
        self.logs: list[Any] = []  # each node's output file, closed by stop()
        self.gcs_address: str | None = None
        self.watchdog: subprocess.Popen | None = None

    # ------------------------------------------------------------------------------------------------ start
    def _ray_start(self, i: int, head: bool) -> subprocess.Popen:
        tmp = self.root / f"n{i}"
        tmp.mkdir(parents=True, exist_ok=True)
        args = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--block", "--disable-usage-stats",
                f"--num-cpus={self.cpus}", f"--temp-dir={tmp}",
                f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
        if head:
            args += ["--head", f"--port={self.gcs_port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}"]
        else:
            args += [f"--address={self.gcs_address}"]
        log = open(self.root / f"n{i}.log", "wb")
        self.logs.append(log)
        # its own session: what it starts stays in its process tree; cwd: a folder with no `ray` in it (a job's
        # `python -c` would import it)
        return subprocess.Popen(args, cwd=tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start(self, timeout_s: float = 120.0) -> "LocalCluster":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.watchdog = subprocess.Popen(
                [sys.executable, "-m", "curate.localcluster", "--watch", str(os.getpid()), str(self.root)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
            self.procs.append(self._ray_start(0, head=True))
            self._wait(lambda: self.api("/api/version") is not None, timeout_s, "the head's Jobs API")
            cluster_file = self.root / "n0" / "ray_current_cluster"
            self._wait(cluster_file.exists, timeout_s, "the head's address")
            self.gcs_address = cluster_file.read_text().strip()
            for i in range(1, self.nodes):
                self.procs.append(self._ray_start(i, head=False))
            self._wait(lambda: self.alive_nodes() >= self.nodes, timeout_s, f"{self.nodes} alive nodes")
        except BaseException:
            self.stop()
            raise
        return self

    def api(self, path: str) -> Any:
        req = urllib.request.Request(self.address + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def alive_nodes(self) -> int:
        got = self.api("/nodes?view=summary")
        rows = (got or {}).get("data", {}).get("summary", [])
        return sum(1 for n in rows if (n.get("raylet") or {}).get("state") == "ALIVE")

    def _wait(self, ok, timeout_s: float, what: str) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if any(p.poll() is not None for k, p in enumerate(self.procs) if k not in self.lost):
                raise RuntimeError(f"a ray node exited while waiting for {what}: see {self.root}/n*.log")
            if ok():
                return
            time.sleep(0.5)
        raise TimeoutError(f"no {what} within {timeout_s:g} s: see {self.root}/n*.log")

    # ------------------------------------------------------------------------------------------------- stop
    def pids(self) -> set[int]:
        """This cluster's processes: each `ray start` and its descendants, and any process naming its temp dir."""
        import psutil

        found: set[int] = set()
        for p in self.procs:
            try:
                proc = psutil.Process(p.pid)
                found |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
            except psutil.NoSuchProcess:
                pass
        found |= processes_naming(str(self.root))
        found.discard(os.getpid())
        if self.watchdog is not None:
            found.discard(self.watchdog.pid)  # it goes last (stop), or it would race us for the same pids
        return found

    def node_pids(self, i: int) -> set[int]:
        """The processes of node ``i`` (0 is the head): its `ray start`, its raylet, workers and agents, and
        anything naming its temp dir."""
        import psutil

        found: set[int] = set()
        try:
            proc = psutil.Process(self.procs[i].pid)
            found |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        except psutil.NoSuchProcess:
            pass
        return (found | processes_naming(str(self.root / f"n{i}"))) - {os.getpid()}

    def node_index(self, node_id: str) -> int | None:
        """This cluster's index (0 is the head) of the alive node with Ray node id ``node_id``, or None."""
        rows = (self.api("/nodes?view=summary") or {}).get("data", {}).get("summary", [])
        for n in rows:
            raylet = n.get("raylet") or {}
            if raylet.get("nodeId") == node_id and raylet.get("state") == "ALIVE":
                name = os.path.basename(raylet.get("tempDir", ""))
                return int(name[1:]) if name[1:].isdigit() else None
        return None

    def log_tail(self, i: int = 0, chars: int = 1500) -> str:
        """The end of node ``i``'s `ray start` output and of its main Ray logs: what a failed test prints, so that
        a node that died on a CI machine says why."""
        logs = self.root / f"n{i}" / "session_latest" / "logs"
        parts = []
        for f in [self.root / f"n{i}.log", *(logs / n for n in ("gcs_server.err", "raylet.err", "dashboard.err",
                                                                "dashboard.log", "raylet.out"))]:
            try:
                text = f.read_bytes()[-chars:].decode("utf-8", "replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"--- {f.relative_to(self.root)}\n{text}")
        return "\n".join(parts)

    def kill_node(self, i: int) -> None:
        """Lose node ``i`` as a machine is lost: SIGKILL to every process of it at once, nothing graceful."""
        self.lost.add(i)
        kill_all(lambda: self.node_pids(i))

    def add_node(self, timeout_s: float = 120.0) -> int:
        """Start one more worker node (after a loss, to bring the cluster back to its size); its index, once it
        is alive. (A killed node stays ALIVE to Ray until its health checks time out, so counting alive nodes
        would not tell.)"""
        i = len(self.procs)
        self.procs.append(self._ray_start(i, head=False))
        self._wait(lambda: self.node_alive(i), timeout_s, f"node {i}")
        return i

    def node_alive(self, i: int) -> bool:
        rows = (self.api("/nodes?view=summary") or {}).get("data", {}).get("summary", [])
        return any((n.get("raylet") or {}).get("state") == "ALIVE" and
                   os.path.basename((n.get("raylet") or {}).get("tempDir", "")) == f"n{i}" for n in rows)

    def stop(self) -> None:
        kill_all(self.pids)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        for log in self.logs:
            log.close()
        self.logs = []
        shutil.rmtree(self.root, ignore_errors=True)
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
            self.watchdog = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def kill_all(find) -> None:
    """SIGKILL every pid ``find()`` returns and wait for them; look again, as a dying raylet may still start a
    worker (three rounds)."""
    import psutil

    for _ in range(3):
        pids = find()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)


def processes_naming(root: str) -> set[int]:
    """Processes whose command line names ``root`` (this cluster's temp dir: every Ray process of its nodes), and
    their descendants."""
    import psutil

    found: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(root in arg for arg in (proc.info["cmdline"] or [])):
                found |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        except psutil.Error:
            pass
    return found


def watch(owner: int, root: str, poll_s: float = 0.5) -> int:
    """The watchdog: once ``owner`` is gone, kill every process of the cluster under ``root`` and remove it. Ends
    by itself when ``root`` disappears (the owner's own `stop()`)."""
    import psutil

    try:
        born = psutil.Process(owner).create_time()
    except psutil.NoSuchProcess:
        born = None

    def owner_alive() -> bool:
        try:
            return born is not None and psutil.Process(owner).create_time() == born  # not a reused pid
        except psutil.NoSuchProcess:
            return False

    while owner_alive():
        if not os.path.isdir(root):
            return 0
        time.sleep(poll_s)
    kill_all(lambda: processes_naming(root) - {os.getpid()})
    shutil.rmtree(root, ignore_errors=True)
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m curate.localcluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=1, help="CPUs per node")
    p.add_argument("--watch", nargs=2, metavar=("PID", "ROOT"), help=argparse.SUPPRESS)  # the watchdog (internal)
    args = p.parse_args(argv)
    if args.watch:
        return watch(int(args.watch[0]), args.watch[1])
    # SIGTERM (kill, a supervisor) and SIGHUP (the terminal closed) stop the nodes as Ctrl-C does
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    c = LocalCluster(args.nodes, args.cpus)
    try:
        c.start()
        print(f"Ray cluster of {args.nodes} nodes up (temp dir {c.root}); in another shell:\n"
              f"  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN={c.token}\n"
              f"  curate submit pipeline.yaml --address {c.address} -o s3://bucket/run\n"
              "Ctrl-C (or SIGTERM) stops it.", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
