"""Run statistics: counted from the rows themselves, timed by the runner, written incrementally.

Counts come from the writer's per-part summaries (every row reaches the writer, alive or as a tombstone with
the step and reason that ended it), so "in = out + dropped + errors" is checked against the output, not against
a second set of counters that could drift. Only what rows cannot carry goes through the ``StatsActor``: seconds
spent per step, and records the readers skipped on purpose (WARC request/metadata records).

The driver rewrites ``OUT/stats.json`` atomically about once a second while the run goes and appends a line to
``OUT/stats/progress.jsonl`` each time, so a web page can poll either file during the run.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

import ray

from curate.writer import atomic_write


@ray.remote(num_cpus=0)
class StatsActor:
    """Aggregates per-step timings and reader skip counts sent by workers (one small call per batch).

    It is bookkeeping, never on the data path: workers send to it without waiting for an answer (`send`), it runs
    on the driver's node (`start_stats_actor`: a job that loses that node is lost anyway, so it cannot be the
    node whose loss ends a job), and if its process dies it is restarted there and the driver gives it back the
    last state it saw (`RunStats`), marking the run's timing as partial."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.batches: Counter = Counter()
        self.rows: Counter = Counter()
        self.rows_out: Counter = Counter()
        self.read_bytes: dict[str, int] = {}  # per input file: bytes read so far (progress and ETA)
        self.read_docs: dict[str, int] = {}
        self.read_files: dict[str, int] = {}
        self.skipped: dict[str, dict[str, int]] = {}  # per file: a retried read task replaces, never adds
        self.reused: list[str] = []
        self.info: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, set[str]] = defaultdict(set)
        self.span: dict[str, list[float]] = {}
        self.messages = 0  # calls taken: the driver waits for this to settle before its last read (`settle`)
        # a restarted actor begins empty: the driver sees this and gives back the state it last read
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def set_info(self, step: str, info: dict[str, Any]) -> None:
        """Step-specific results a count cannot carry (e.g. dedup's cluster-size histogram)."""
        self.messages += 1
        self.info[step] = info

    def add_time(self, step: str, seconds: float, rows: int, worker: str | None = None,
                 start: float | None = None, end: float | None = None, rows_out: int | None = None) -> None:
        """One batch of ``step``: its seconds, rows, the worker process that ran it (node:pid) and when it began
        and ended (epoch seconds; end defaults to start + seconds), so stats can show how many workers ran a step
        and its wall time next to its summed seconds. ``rows_out``: rows still alive after it (live progress;
        the final counts come from the parts)."""
        self.messages += 1
        self.seconds[step] += seconds
        self.batches[step] += 1
        self.rows[step] += rows
        if rows_out is not None:
            self.rows_out[step] += rows_out
        if worker is not None and start is not None:
            self.workers[step].add(worker)
            end = start + seconds if end is None else end
            lo, hi = self.span.get(step, (start, end))
            self.span[step] = [min(lo, start), max(hi, end)]

    def read_progress(self, url: str, nbytes: int, documents: int) -> None:
        """A reader got this far into ``url`` (sent per block, without waiting for an answer)."""
        self.messages += 1
        self.read_bytes[url] = max(nbytes, self.read_bytes.get(url, 0))
        self.read_docs[url] = documents

    def add_read(self, url: str, documents: int, skipped: dict[str, int], nbytes: int | None = None) -> None:
        self.messages += 1
        self.read_files[url] = documents
        self.read_docs[url] = documents
        if nbytes is not None:
            self.read_bytes[url] = nbytes
        self.skipped[url] = dict(skipped)

    def add_reused(self, what: str) -> None:
        """A checkpoint a resumed run used instead of redoing the work (``<step>:<stage>``)."""
        self.messages += 1
        self.reused.append(what)

    def carried(self) -> dict[str, Any]:
        """What a resumed run cannot recount when it starts after the readers: files read, records skipped,
        whole-dataset steps' results. Stored with an input checkpoint; given back with `restore`."""
        return {"read_files": dict(self.read_files), "skipped": dict(self.skipped), "info": dict(self.info)}

    def restore(self, state: dict[str, Any]) -> None:
        self.messages += 1
        self.read_files.update(state.get("read_files", {}))
        self.skipped.update(state.get("skipped", {}))
        self.info.update(state.get("info", {}))

    def state(self) -> dict[str, Any]:
        """Everything this actor holds, as plain data (`snapshot` derives the figures from it; `merge` takes it
        back after a restart)."""
        return {"seconds": dict(self.seconds), "batches": dict(self.batches), "rows": dict(self.rows),
                "rows_out": dict(self.rows_out), "read_bytes": dict(self.read_bytes),
                "read_docs": dict(self.read_docs), "read_files": dict(self.read_files),
                "skipped": {k: dict(v) for k, v in self.skipped.items()}, "reused": list(self.reused),
                "info": dict(self.info), "workers": {k: sorted(v) for k, v in self.workers.items()},
                "span": {k: list(v) for k, v in self.span.items()}, "messages": self.messages,
                "restarted": self.restarted}

    def merge(self, state: dict[str, Any]) -> None:
        """After a restart: add the state the driver last read to what arrived since (sums add, per-file values
        and sets combine), so only the calls between that read and the restart are missing."""
        for key in ("seconds", "batches", "rows", "rows_out"):
            mine = getattr(self, key)
            for k, v in state.get(key, {}).items():
                mine[k] += v
        for url, n in state.get("read_bytes", {}).items():
            self.read_bytes[url] = max(n, self.read_bytes.get(url, 0))
        for key in ("read_docs", "read_files", "skipped", "info"):
            getattr(self, key).update({k: v for k, v in state.get(key, {}).items() if k not in getattr(self, key)})
        self.reused = list(state.get("reused", [])) + [r for r in self.reused if r not in state.get("reused", [])]
        for step, ws in state.get("workers", {}).items():
            self.workers[step].update(ws)
        for step, (lo, hi) in state.get("span", {}).items():
            a, b = self.span.get(step, (lo, hi))
            self.span[step] = [min(a, lo), max(b, hi)]
        self.restarted = False  # given back: a second restart is noticed again

    def snapshot(self) -> dict[str, Any]:
        return view(self.state())


def view(state: dict[str, Any]) -> dict[str, Any]:
    """The figures stats.json shows, from a `StatsActor.state()`."""
    skipped: Counter = Counter()
    for per_file in state["skipped"].values():
        skipped.update(per_file)
    return {"seconds": dict(state["seconds"]), "batches": dict(state["batches"]), "rows": dict(state["rows"]),
            "rows_out": dict(state["rows_out"]), "bytes_read": sum(state["read_bytes"].values()),
            "docs_read": sum(state["read_docs"].values()),
            "files_read": len(state["read_files"]), "skipped": dict(skipped), "info": dict(state["info"]),
            "reused": list(state["reused"]),
            "workers": {k: len(v) for k, v in state["workers"].items()},
            "wall": {k: hi - lo for k, (lo, hi) in state["span"].items()}}


def start_stats_actor() -> Any:
    """The run's `StatsActor`, on this (the driver's) node, restarted there if its process dies.

    Placement matters: with Ray's default scheduling it could land on any worker node, and losing that node took
    the job down with it (every batch step waited on the actor, and Ray Data does not retry a step whose UDF
    raised `ActorUnavailableError`). The driver's node is the one node whose loss ends the job anyway. Calls that
    reach it while it restarts are retried there (``max_task_retries``), never failed back to a worker."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return StatsActor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
                              max_restarts=-1, max_task_retries=-1).remote()


def send(actor: Any, method: str, *args: Any) -> None:
    """Tell the stats actor something without waiting for it: bookkeeping never holds up, or fails, a batch. A
    message lost with the actor costs a timing figure (stats.json marks the run's timing partial), never a
    document or a count the rows carry."""
    if actor is None:
        return
    try:
        getattr(actor, method).remote(*args)
    except Exception:  # noqa: BLE001  (a handle that cannot take calls any more: the figure is lost, not the run)
        pass


def ask(actor: Any, method: str, *args: Any, timeout_s: float = 60.0) -> Any:
    """Call the stats actor from the driver and wait for the answer; None if it cannot answer within
    ``timeout_s`` (it is restarting, or gone with the driver's node)."""
    if actor is None:
        return None
    try:
        return ray.get(getattr(actor, method).remote(*args), timeout=timeout_s)
    except Exception:  # noqa: BLE001  (ray.exceptions.RayActorError, ActorUnavailableError, GetTimeoutError)
        return None


def settle(actor: Any, quiet_s: float = 0.05, most_s: float = 2.0) -> None:
    """Wait until the actor has taken no call for ``quiet_s`` (at most ``most_s``): workers send without
    waiting, so the last of their calls may still be on the way when the driver has every block."""
    deadline, last = time.time() + most_s, None
    while time.time() < deadline:
        state = ask(actor, "state", timeout_s=most_s)
        if state is None or state["messages"] == last:
            return
        last = state["messages"]
        time.sleep(quiet_s)


# how long the driver waits for the stats actor's answer before going on with what it last read
ACTOR_TIMEOUT_S = 10.0

# the stage in which a whole-dataset step waits for its input to be complete (the steps before it do their work)
WAIT_STAGE = "materialize_input"


class StageTimer:
    """Wall time of the stages of a whole-dataset step, reported as ``<step>:<stage>`` (stats.json `stages`)."""

    def __init__(self, stats_actor: Any, step: str):
        self.actor, self.step, self.t = stats_actor, step, time.perf_counter()

    def done(self, stage: str, rows: int) -> None:
        now = time.perf_counter()
        send(self.actor, "add_time", f"{self.step}:{stage}", now - self.t, rows)
        self.t = now

    def info(self, info: dict[str, Any]) -> None:
        send(self.actor, "set_info", self.step, info)


def worker_id() -> str:
    """This worker process as ``<node id prefix>:<pid>``: distinct across the nodes of a cluster."""
    import os

    return f"{ray.get_runtime_context().get_node_id()[:12]}:{os.getpid()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunStats:
    """Driver-side aggregate of part summaries; renders and writes stats.json."""

    def __init__(self, out_dir: str, steps: list[str], config: dict[str, Any], n_files: int,
                 skipped_files: list[str], actor: Any, cluster: dict[str, Any] | None = None,
                 bytes_total: int | None = None):
        self.out_dir = out_dir.rstrip("/")
        self.bytes_total = bytes_total
        # where the command's time goes (seconds): startup (curate's import to Ray: imports, config, listing
        # inputs), ray_init, plan (building the plan; with whole-dataset steps that runs everything up to the last
        # one's input barrier), stream (the rest, to the last part written), finish (parts cut across blocks)
        self.phases: dict[str, float] = {}
        self.cluster = cluster or {}
        self.steps = ["read", *steps]
        self.config = config
        self.n_files = n_files
        self.skipped_files = skipped_files
        self.actor = actor
        self.counts: Counter = Counter()
        # "<step>|<rule>" -> [documents, spans, characters] a step edited (cut out or replaced) by that rule
        self.edits: dict[str, list[int]] = {}
        self.parts = 0
        self.kept_chars = 0
        self.started = time.time()
        self.started_iso = now_iso()
        self._last_flush = 0.0
        self.resumed = False  # set by the runner on --resume
        self.parts_reused = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # the driver's loop adds parts while the heartbeat thread flushes
        self._flush_lock = threading.Lock()  # one flush at a time (the heartbeat's, the driver's last)
        self._state: dict[str, Any] | None = None  # the stats actor's state as last read
        self.partial: dict[str, Any] = {}  # why timing figures may be missing (`timing_note`)
        self._progress = _ProgressLog(f"{out_dir}/stats/progress.jsonl")
        self._metrics = RayMetrics(self.out_dir)

    def add_done_parts(self, markers: list[dict[str, Any]]) -> None:
        """Parts an earlier attempt of this run finished (a resume): counted from their markers, not redone."""
        self.resumed = True
        self.parts_reused += len(markers)
        self.add_parts([{**m, "counts": json.dumps(m["counts"]), "edits": json.dumps(m.get("edits") or {})}
                        for m in markers])

    def add_parts(self, summaries: list[dict[str, Any]]) -> None:
        with self._lock:
            for s in summaries:
                if s["part"] in self._seen:  # two writers that completed the same cut part both report it
                    continue
                self._seen.add(s["part"])
                self.parts += 1
                self.kept_chars += int(s["kept_chars"])
                self.counts.update(json.loads(s["counts"]))
                for key, (docs, spans, chars) in json.loads(s.get("edits") or "{}").items():
                    acc = self.edits.setdefault(key, [0, 0, 0])
                    acc[0], acc[1], acc[2] = acc[0] + docs, acc[1] + spans, acc[2] + chars

    def actor_state(self) -> dict[str, Any] | None:
        """The stats actor's state, kept as the last one read. An actor that restarted (its process died; it is
        restarted on the driver's node) gets that last state back, and the run's timing is marked partial: the
        calls it took between that read and its death are lost. An actor that does not answer leaves the last
        state in place, also marked partial."""
        if self.actor is None:
            return None
        state = ask(self.actor, "state", timeout_s=ACTOR_TIMEOUT_S)
        if state is None:
            self.partial.setdefault("no_answer", now_iso())
            return self._state
        if state["restarted"]:
            self.partial["restarts"] = self.partial.get("restarts", 0) + 1
            if self._state is not None:
                ask(self.actor, "merge", self._state, timeout_s=ACTOR_TIMEOUT_S)
                state = ask(self.actor, "state", timeout_s=ACTOR_TIMEOUT_S) or state
        self._state = state
        return state

    def timing_note(self) -> dict[str, Any]:
        """stats.json ``timing``: complete, or partial and why."""
        if not self.partial:
            return {"partial": False}
        why = []
        if self.partial.get("restarts"):
            why.append(f"curate's stats actor restarted {self.partial['restarts']} time(s); the timings it took "
                       "just before are missing")
        if self.partial.get("no_answer"):
            why.append(f"curate's stats actor did not answer (first at {self.partial['no_answer']}); figures are "
                       "those last read")
        return {"partial": True, "why": "; ".join(why)}

    def render(self, status: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """stats.json from the parts counted so far and the stats actor's ``state`` (`actor_state`)."""
        timing = view(state) if state is not None else {}
        seconds = timing.get("seconds", {})
        by_step: dict[str, dict[str, Counter]] = {s: {"drop": Counter(), "error": Counter()} for s in self.steps}
        created: Counter = Counter()
        kept = n_read = 0
        for key, n in self.counts.items():
            born, step, fate, reason = key.split("|", 3)
            if born:
                created[born] += n
            else:
                n_read += n
            if not fate:
                kept += n
                continue
            by_step.setdefault(step, {"drop": Counter(), "error": Counter()})[fate][reason] += n
        total = sum(self.counts.values())
        rows, alive = [], n_read
        for step in self.steps:
            dropped, errors = by_step[step]["drop"], by_step[step]["error"]
            out = alive + created[step] - sum(dropped.values()) - sum(errors.values())
            row = {"step": step, "in": alive, "out": out, "dropped": dict(sorted(dropped.items())),
                   "errors": dict(sorted(errors.items())), "seconds": round(seconds.get(step, 0.0), 3),
                   "batches": timing.get("batches", {}).get(step, 0),
                   # rows the step has processed so far: moves during the run, before any part is written
                   "rows_processed": timing.get("rows", {}).get(step, 0)}
            if step in timing.get("rows_out", {}):
                row["rows_out"] = timing["rows_out"][step]
            if step in timing.get("workers", {}):
                # batch steps: how many worker processes ran it, first start to last end, and summed / wall
                wall = timing["wall"][step]
                row["workers"] = timing["workers"][step]
                row["wall_s"] = round(wall, 3)
                row["parallelism"] = round(seconds.get(step, 0.0) / wall, 2) if wall > 0 else None
            if created[step]:
                row["created"] = created[step]
            edited = {k.split("|", 1)[1]: {"documents": d, "spans": sp, "chars": c}
                      for k, (d, sp, c) in sorted(self.edits.items()) if k.split("|", 1)[0] == step}
            if edited:  # documents a step edited, per rule: they stay documents (in and out are unchanged)
                row["edited"] = edited
            stages = {k.split(":", 1)[1]: round(v, 3) for k, v in seconds.items() if k.startswith(step + ":")}
            if stages:  # whole-dataset steps time their internal stages (wall seconds)
                row["stages"] = stages
                row["stage_rows"] = timing.get("rows", {}).get(f"{step}:{WAIT_STAGE}", 0)  # its input
                # its own work; materialize_input is the wait for everything before it (extraction, models:
                # their seconds are theirs), shown apart as `waited_s`
                row["seconds"] = round(sum(v for k, v in stages.items() if k != WAIT_STAGE), 3)
                if WAIT_STAGE in stages:
                    row["waited_s"] = stages[WAIT_STAGE]
            if step in timing.get("info", {}):
                row["info"] = timing["info"][step]
            rows.append(row)
            alive = out
        n_dropped = sum(sum(v["drop"].values()) for v in by_step.values())
        n_errors = sum(sum(v["error"].values()) for v in by_step.values())
        elapsed = time.time() - self.started
        return {
            "status": status,
            "started": self.started_iso,
            "updated": now_iso(),
            "elapsed_s": round(elapsed, 3),
            "config": self.config,
            "cluster": self.cluster,
            "inputs": {"files": self.n_files, "files_read": timing.get("files_read", 0),
                       "bytes_total": self.bytes_total, "bytes_read": timing.get("bytes_read", 0),
                       "documents_read": timing.get("docs_read", 0),
                       "skipped_files": self.skipped_files,
                       "records_skipped": dict(sorted(timing.get("skipped", {}).items()))},
            "steps": rows,
            # a resumed run: what it took from the earlier attempt instead of redoing it
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            # seconds per step come from messages to curate's stats actor; a lost one marks them partial
            "timing": self.timing_note(),
            "resume": {"resumed": self.resumed, "parts_reused": self.parts_reused,
                       "checkpoints_reused": timing.get("reused", [])},
            "totals": {
                "documents_in": n_read, "documents_created": total - n_read, "documents_out": kept,
                "dropped": n_dropped, "errors": n_errors,
                "balanced": total == kept + n_dropped + n_errors and alive == kept,
                "characters_out": self.kept_chars, "parts": self.parts,
                "docs_per_s": round(total / elapsed, 2) if elapsed > 0 else None,
            },
        }

    def flush(self, status: str = "running", force: bool = False, with_timing: bool = True) -> dict[str, Any] | None:
        """Render and write stats.json (at most about once a second unless ``force``). ``with_timing`` False: without
        the stats actor's numbers, for the first write of a run, which would otherwise wait for the actor's worker
        process to start (~0.5 s a command pays before any work is planned). The last flush of a run (status not
        ``running``) first lets the workers' last calls reach the actor (`settle`). The actor is asked outside the
        lock the driver's loop takes to add parts: a slow answer delays stats.json, never the data."""
        with self._flush_lock:
            if not force and time.time() - self._last_flush < 0.9:
                return None
            self._last_flush = time.time()
            if with_timing and status != "running":
                settle(self.actor)
            state = self.actor_state() if with_timing else None
            with self._lock:
                doc = self.render(status, state)
            self._write(doc, status)
        return doc

    def _write(self, doc: dict[str, Any], status: str) -> None:
        atomic_write(f"{self.out_dir}/stats.json", (json.dumps(doc, indent=1) + "\n").encode())
        line = {"t": doc["updated"], "elapsed_s": doc["elapsed_s"], "status": status, **doc["totals"],
                "rows_processed": {s["step"]: s.get("rows_processed", 0) for s in doc["steps"]}}
        self._progress.add(json.dumps(line) + "\n", force=status != "running")
        self._metrics.update(doc)


class RayMetrics:
    """The per-step counts as Ray metrics (``ray.util.metrics``), set from each stats.json render, so a cluster
    that scrapes Ray's Prometheus endpoint sees them next to Ray's own: ``curate_step_documents{output, step,
    kind=in|out|created}``, ``curate_step_dropped{output, step, fate=drop|error, reason}`` and
    ``curate_run_documents{output, kind=in|out|dropped|errors}``. Gauges, not counters: stats.json's numbers are
    totals recomputed from the parts, and a resumed run starts from the parts already done. Without a metrics
    agent (a Ray without ``ray[default]``) they are simply not exported."""

    def __init__(self, out_dir: str):
        self.output = out_dir
        self.gauges: dict[str, Any] | None = {}  # {}: not made yet; None: given up

    def _make(self) -> dict[str, Any]:
        from ray.util.metrics import Gauge

        return {"step": Gauge("curate_step_documents", "documents per step of a curate run",
                              tag_keys=("output", "step", "kind")),
                "dropped": Gauge("curate_step_dropped", "documents a step dropped or failed, by reason",
                                 tag_keys=("output", "step", "fate", "reason")),
                "run": Gauge("curate_run_documents", "a curate run's totals", tag_keys=("output", "kind"))}

    def update(self, doc: dict[str, Any]) -> None:
        if self.gauges is None:
            return
        try:
            self.gauges = self.gauges or self._make()
            self._set(doc)
        except Exception:  # metrics are a courtesy: a Ray that cannot take them must not stop the run's stats
            self.gauges = None

    def _set(self, doc: dict[str, Any]) -> None:
        g, out = self.gauges, self.output
        for s in doc["steps"]:
            for kind in ("in", "out", "created"):
                if kind in s:
                    g["step"].set(s[kind], tags={"output": out, "step": s["step"], "kind": kind})
            for fate, key in (("drop", "dropped"), ("error", "errors")):
                for reason, n in s[key].items():
                    g["dropped"].set(n, tags={"output": out, "step": s["step"], "fate": fate, "reason": reason})
        t = doc["totals"]
        for kind, key in (("in", "documents_in"), ("out", "documents_out"), ("dropped", "dropped"),
                          ("errors", "errors")):
            g["run"].set(t[key], tags={"output": out, "kind": kind})


class _ProgressLog:
    """OUT/stats/progress.jsonl: appended to on a local disk; on an object store (no append) the lines are kept
    here and the object is rewritten whole, at most every `REWRITE_S` seconds while the run goes, so a long run
    does not upload its growing history every second. A resumed run keeps the lines already there."""

    REWRITE_S = 10.0

    def __init__(self, url: str):
        from curate import storage

        self.url = url
        self.fs, self.path = storage.url_to_fs(url)
        self.local = storage.is_local(self.fs)
        self.lines: list[str] | None = None
        self.written = 0.0
        self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)

    def add(self, line: str, force: bool = False) -> None:
        if self.local:
            with open(self.path, "a") as f:
                f.write(line)
            return
        if self.lines is None:
            self.lines = self.fs.cat_file(self.path).decode().splitlines(keepends=True) \
                if self.fs.exists(self.path) else []
        self.lines.append(line)
        if force or time.time() - self.written >= self.REWRITE_S:
            atomic_write(self.url, "".join(self.lines).encode())
            self.written = time.time()


# A step counts as CPU-heavy when its summed seconds are at least this share of the run's elapsed time, and at
# least HEAVY_SECONDS: on a sample-sized run a few seconds of extraction over 14 files cannot keep 2 cores
# busy, and saying so there is noise, not advice.
HEAVY_SHARE, HEAVY_SECONDS = 0.25, 30.0


def parallelism_warnings(stats: dict[str, Any]) -> list[str]:
    """CPU-heavy steps that ran on far fewer workers, or at far lower parallelism, than the cluster allowed.

    The reachable parallelism is bounded by the CPUs and by the step's batches. Light steps are left out: fused
    with a heavy one into the same task, their wall time spans the heavy step's, so summed / wall says nothing
    about them. A heavy step at parallelism under 3/4 of reachable was serialised by scheduling (e.g. an actor
    pool too small for the task steps Ray fused into it), which is what a user should hear about.
    """
    cpus = (stats.get("cluster") or {}).get("cpus") or 0
    elapsed = stats.get("elapsed_s") or 0
    out = []
    for s in stats["steps"]:
        par = s.get("parallelism")
        if par is None or cpus < 2 or s["seconds"] < max(HEAVY_SECONDS, HEAVY_SHARE * elapsed):
            continue
        reachable = min(cpus, s.get("batches") or 1)
        if reachable >= 2 and (par < 0.75 * reachable or s["workers"] < 0.5 * reachable):
            out.append(f"warning: step {s['step']} ran at parallelism {par:.2f} ({s['seconds']:.1f} s of work in "
                       f"{s['wall_s']:.1f} s wall on {s['workers']} worker(s)) with {cpus:g} CPUs available; "
                       f"raise resources.concurrency of the actor step it is fused into, or give it more input files")
    return out


def format_table(stats: dict[str, Any]) -> str:
    """The per-step table `curate run` and `curate inspect` print."""
    lines = [f"{'step':<18}{'in':>8}{'out':>8}{'dropped':>9}{'errors':>8}{'seconds':>9}{'workers':>8}"
             f"{'parallel':>9}  reasons"]
    for s in stats["steps"]:
        reasons = ", ".join(f"{k}={v}" for k, v in {**s["dropped"], **s["errors"]}.items())
        if s.get("edited"):
            reasons = ", ".join(x for x in (reasons, "edited: " + ", ".join(
                f"{k}={v['documents']}" for k, v in s["edited"].items())) if x)
        par = f"{s['parallelism']:.2f}" if s.get("parallelism") is not None else "-"
        lines.append(f"{s['step']:<18}{s['in']:>8}{s['out']:>8}{sum(s['dropped'].values()):>9}"
                     f"{sum(s['errors'].values()):>8}{s['seconds']:>9.2f}{s.get('workers', '-'):>8}{par:>9}"
                     f"  {reasons}")
    t = stats["totals"]
    made = f" + created {t['documents_created']}" if t.get("documents_created") else ""
    lines.append(f"documents in {t['documents_in']}{made} = out {t['documents_out']} + dropped {t['dropped']} + "
                 f"errors {t['errors']} ({'balanced' if t['balanced'] else 'NOT BALANCED'}); {t['characters_out']} "
                 f"characters out in {t['parts']} parts")
    skipped = stats["inputs"].get("records_skipped") or {}
    if skipped:
        lines.append("records skipped (not documents): " + ", ".join(f"{k}={v}" for k, v in skipped.items()))
    return "\n".join(lines)
