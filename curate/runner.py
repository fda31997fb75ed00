"""Build a Ray Data plan from a validated pipeline and run it to Dolma output.

The runner, not the operators, owns the cross-cutting work: it hands each operator only the live rows, turns
rows the operator marked into tombstones (text and payload freed, step recorded), falls back to one row at a
time when a batch raises so one poisonous document costs one counted error, times each step, and writes stats.

Scheduling: a ``tasks`` step is a plain function that Ray fuses with its neighbours into one task per block
(read, extract, langid, quality_signals, filter, write run back to back in one worker, no copies between them);
its operator is set up once per worker process and cached. An ``actors`` step runs in an actor pool that keeps
a model loaded. Blocks are processed whole (``batch_size=None``) so no block ever mixes rows of two files'
batches in ways that depend on timing: part files stay deterministic.
"""

from __future__ import annotations

import atexit
import datetime
import errno
import os
import re
import shutil
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import schema
from curate.config import PipelineConfig, StepSpec
from curate.operator import BatchOperator, DatasetOperator, Resources, RunContext

_WORKER_OPS: dict[str, "StepRunner"] = {}


class StepRunner:
    """Runs one batch operator on a block: live rows in, tombstones out, timing to the stats actor."""

    def __init__(self, step: StepSpec, stats_actor: Any):
        self.step = step
        self.label = step.label
        self.stats_actor = stats_actor
        self.op: BatchOperator = step.op(step.params, step.label)  # type: ignore[assignment]
        self.outputs = step.op.output_columns(step.params)  # per worker, not per batch
        self.op.setup()
        atexit.register(self.op.teardown)  # e.g. the extract sandbox child ends with its worker

    def __call__(self, table: pa.Table) -> pa.Table:
        from curate import failpoints

        failpoints.hit(f"step:{self.label}")
        t0, start = time.perf_counter(), time.time()
        n = table.num_rows
        alive = pc.is_null(table.column(schema.FATE)).to_numpy(zero_copy_only=False)
        alive_idx = np.flatnonzero(alive)
        live = table.take(alive_idx) if len(alive_idx) < n else table
        out = self._process(live) if live.num_rows else live
        out = self._ensure_outputs(out)
        out = self._mark_born(out, live.num_rows)
        out = tombstone_new(out, self.label, keep_text=self.op.keeps_rejected_text or self.step.keep_rejects)
        if len(alive_idx) < n:
            dead_idx = np.flatnonzero(~alive)
            combined = pa.concat_tables([out, table.take(dead_idx)], promote_options="default")
            created = out.num_rows - len(alive_idx)
            keys = np.concatenate([alive_idx, n + np.arange(created), dead_idx]).astype(np.int64)
            # created rows sort after every input row of the block; input rows keep their positions
            result = combined.take(np.argsort(keys, kind="stable"))
        else:
            result = out
        if self.stats_actor is not None:
            from curate.stats import send, worker_id

            send(self.stats_actor, "add_time", self.label, time.perf_counter() - t0, live.num_rows, worker_id(),
                 start, None, _alive(out))
        return schema.conform(result)

    def _process(self, live: pa.Table) -> pa.Table:
        try:
            out = self.op.process(live)
            self._check_shape(live, out)
            return out
        except Exception:  # noqa: BLE001  (retry row by row to isolate the culprit)
            return self._one_by_one(live)

    def _one_by_one(self, live: pa.Table) -> pa.Table:
        pieces = []
        for i in range(live.num_rows):
            row = live.slice(i, 1)
            try:
                out = self.op.process(row)
                self._check_shape(row, out)
            except Exception as e:  # noqa: BLE001
                detail = f"{type(e).__name__}: {e}"[:500]
                print(f"[curate] {self.label}: error on id={row.column('id')[0]}: "
                      f"{traceback.format_exc(limit=3)}", file=sys.stderr)
                from curate.operator import mark

                out = mark(row, [True], schema.ERROR, f"exception:{type(e).__name__}", [detail])
            pieces.append(out)
        return pa.concat_tables(pieces, promote_options="default")

    @staticmethod
    def _check_shape(inp: pa.Table, out: pa.Table) -> None:
        if out.num_rows < inp.num_rows or not out.column("id").slice(0, inp.num_rows).equals(inp.column("id")):
            raise RuntimeError("operator must return its input rows, in order, before any new rows")

    def _ensure_outputs(self, out: pa.Table) -> pa.Table:
        for col, typ in self.outputs.items():
            if col not in out.column_names:
                out = out.append_column(col, pa.nulls(out.num_rows, typ))
        for col in (schema.FATE, schema.REASON, schema.DETAIL, schema.STEP):
            if col not in out.column_names:
                out = out.append_column(col, pa.nulls(out.num_rows, pa.string()))
        return out

    def _mark_born(self, out: pa.Table, n_inputs: int) -> pa.Table:
        """Rows after the input rows are new documents: they were born at this step (stats count them apart)."""
        if out.num_rows == n_inputs:
            return out
        born = out.column(schema.BORN).to_pylist() if schema.BORN in out.column_names else [None] * out.num_rows
        for i in range(n_inputs, out.num_rows):
            born[i] = born[i] or self.label
        from curate.operator import set_column

        return set_column(out, schema.BORN, pa.array(born, pa.string()))


def _alive(table: pa.Table) -> int:
    """Rows no step has marked (live progress: a step's documents out so far)."""
    return table.column(schema.FATE).null_count if schema.FATE in table.column_names else table.num_rows


def tombstone_new(out: pa.Table, label: str, keep_text: bool = False) -> pa.Table:
    """Rows marked by step ``label``: record the step, free text and payload (the writer counts them). With
    ``keep_text`` the text stays, so the writer can put it under OUT/rejects/. Used after batch steps and
    whole-dataset steps alike."""
    if schema.FATE not in out.column_names:
        return out
    if schema.STEP not in out.column_names:
        out = out.append_column(schema.STEP, pa.nulls(out.num_rows, pa.string()))
    marked = pc.and_(pc.is_valid(out.column(schema.FATE)), pc.is_null(out.column(schema.STEP)))
    if not pc.any(marked).as_py():
        return out
    names = out.column_names
    out = out.set_column(names.index(schema.STEP), schema.STEP,
                         pc.if_else(marked, pa.scalar(label), out.column(schema.STEP)))
    if not keep_text:
        out = out.set_column(names.index("text"), "text",
                             pc.if_else(marked, pa.scalar(None, pa.string()), out.column("text")))
    if schema.RAW in names:
        raw = out.column(schema.RAW)
        out = out.set_column(names.index(schema.RAW), schema.RAW,
                             pc.if_else(marked, pa.scalar(None, raw.type), raw))
    return out


def _task_fn(step: StepSpec, stats_actor: Any):
    """A function for task-based steps: the operator is built and set up once per worker process."""

    def run(table: pa.Table) -> pa.Table:
        runner = _WORKER_OPS.get(step.label)
        if runner is None:
            runner = _WORKER_OPS[step.label] = StepRunner(step, stats_actor)
        return runner(table)

    run.__name__ = step.label.replace("#", "_")
    return run


class _ActorStep:
    """Actor-pool wrapper: Ray Data constructs it once per actor, so the model loads once per actor."""

    def __init__(self, step: StepSpec, stats_actor: Any):
        self.runner = StepRunner(step, stats_actor)

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.runner(table)


def _write_fn(writer, stats_actor):
    def write(table: pa.Table) -> pa.Table:
        from curate.stats import send, worker_id

        t0, start = time.perf_counter(), time.time()
        kept = _alive(table)
        out = writer(table)
        if stats_actor is not None:
            send(stats_actor, "add_time", "write", time.perf_counter() - t0, table.num_rows, worker_id(), start,
                 None, kept)
        return out

    return write


def actor_pool(res: Resources):
    """The actor pool of an ``actors`` step. ``concurrency`` set: a pool of exactly that size. Unset: an
    autoscaling pool from 1 up to as many actors as the cluster's CPUs (or GPUs, for a GPU step) can hold at
    once, so the task steps Ray fuses into the actor step never run on fewer workers than the machine has.

    Ray Data fuses the task steps before an actor step into it (read -> extract -> ... -> preselect in one actor)
    when their resources match; measured on 4,000 pages, keeping that fusion with a full-size pool (extract
    parallelism 1.76, 78 s) beat a fusion boundary before the actor step (0.89, 130 s: the pool's reserved CPUs
    starve the task steps). A GPU step never fuses with CPU steps (its num_gpus differs), so its pool is sized by
    GPUs and the CPU work before it stays in tasks on every core."""
    import ray
    from ray.data import ActorPoolStrategy

    # A CPU pool takes one block per actor at a time. Its input is mostly read tasks (reading fuses into it), so
    # there is nothing to prefetch, and Ray Data's default of 4 in flight lets the first actor that is ready take
    # four files while the others wait, then leaves blocks queued behind a busy actor at the end while another
    # idles. A GPU pool keeps the default: its input blocks come from CPU tasks and prefetching them hides the
    # transfer.
    per_actor = {} if res.num_gpus else {"max_tasks_in_flight_per_actor": 1}
    if res.concurrency:
        return ActorPoolStrategy(size=res.concurrency, **per_actor)
    total = ray.cluster_resources()
    if res.num_gpus:
        most = int(total.get("GPU", 0) // res.num_gpus)
    else:
        most = int(total.get("CPU", 1) // res.num_cpus)
    # start at full size: the fused task steps need every worker from the first block on, and a pool that grows
    # only once a queue builds up leaves cores idle through the start of the run
    return ActorPoolStrategy(min_size=1, max_size=max(1, most), initial_size=max(1, most), **per_actor)


class _SaveInput:
    """Per block, before a whole-dataset step: write the rows of each part it holds to
    ``OUT/_work/<step>/input/<part>/<first ord>-<last ord>.parquet`` (the step's input checkpoint; one file per
    part, or per piece of a part Ray cut) and pass the block on."""

    def __init__(self, url: str, keys: dict[str, str], label: str, per_part: int):
        self.url, self.keys, self.label, self.per_part = url, keys, label, per_part

    def __call__(self, table: pa.Table) -> pa.Table:
        from curate import failpoints
        from curate.checkpoint import files_under, write_table
        from curate.writer import part_groups

        for part, idx in part_groups(table, self.keys, self.per_part).items():
            ords = table.column(schema.ORD).to_numpy()[idx]
            write_table(f"{self.url}/{part}/{int(ords.min()):09d}-{int(ords.max()):09d}.parquet", table.take(idx))
        if failpoints.armed():
            failpoints.hit(f"{self.label}:input_part", len(files_under(self.url, ".parquet")))
        return table


class _DropDone:
    """After the last whole-dataset step of a resumed run: rows of parts the writer already finished go no
    further (their counts come from the part markers)."""

    def __init__(self, done: frozenset[str], keys: dict[str, str], per_part: int):
        self.done, self.keys, self.per_part = done, keys, per_part

    def __call__(self, table: pa.Table) -> pa.Table:
        from curate.writer import part_groups

        gone = [idx for part, idx in part_groups(table, self.keys, self.per_part).items() if part in self.done]
        if not gone:
            return table
        keep = np.ones(table.num_rows, dtype=bool)
        keep[np.concatenate(gone)] = False
        return table.filter(pa.array(keep))


def _intervals(spans: list[tuple[str, int, int]], files: list[tuple[str, str]]
               ) -> dict[str, tuple[tuple[int, int], ...]]:
    """(part, first ord, last ord) of what a resume already has -> per input URL, sorted ordinal intervals."""
    by_key: dict[str, list[tuple[int, int]]] = {}
    for part, lo, hi in spans:
        by_key.setdefault(part.rpartition("-")[0], []).append((lo, hi))
    return {url: tuple(sorted(by_key[key])) for url, key in files if key in by_key}


def _pieces(rel_paths: list[str]) -> list[tuple[str, int, int]]:
    """Input checkpoint files ``<part>/<first>-<last>.parquet`` -> (part, first, last)."""
    out = []
    for rel in rel_paths:
        part, _, name = rel.rpartition("/")
        lo, hi = name[:-len(".parquet")].split("-")
        out.append((part, int(lo), int(hi)))
    return out


def _checkpointed_input(ds, ck: Any, keys: dict[str, str], have: list[str], per_part: int):
    """A whole-dataset step's input, materialised; with checkpoints on, each block is also written as it streams
    by, and the pieces a killed attempt already wrote (``have``, which the readers skipped) are read back."""
    from curate.checkpoint import read_blocks

    if not ck.enabled:
        return ds.materialize()
    if not have:
        ck.clear("input")  # a step after the first whole-dataset one: its input is remade whole
    url = ck.stage_dir("input")
    ds = ds.map_batches(_SaveInput(url, keys, ck.step, per_part), batch_format="pyarrow", batch_size=None,
                        zero_copy_batch=True)
    if have:
        ds = ds.union(read_blocks([f"{url}/{p}" for p in have]))
    return ds.materialize()


def _source(cfg: PipelineConfig, out_dir: str, stats_actor: Any, files: list[tuple[str, str]], limit: int | None,
            resume: bool, dataset_steps: list[int], saved_input: set[int], parts_done: dict[str, Any]):
    """Where the plan starts: (dataset, index of the first step to run, whether it starts from a complete input
    checkpoint, the input-checkpoint pieces of the first whole-dataset step a killed attempt left). A fresh run
    starts at the readers; a resume at the last complete input checkpoint, else at the readers told which ordinal
    intervals it already has."""
    from curate.checkpoint import Checkpoints, files_under, read_blocks
    from curate.readers import read_dataset
    from curate.stats import ask, send

    keys, per_part = dict(files), cfg.input.docs_per_block
    if resume and cfg.output.checkpoints:  # jump to the last whole-dataset step whose input is complete
        for i in reversed(dataset_steps):
            ck = Checkpoints(out_dir, cfg.steps[i].label, stats_actor)
            marker = ck.load("input")
            if marker is not None:
                ck.reused("input")
                ask(stats_actor, "restore", marker["value"]["carried"])
                return read_blocks([f"{ck.stage_dir('input')}/{p}" for p in marker["value"]["pieces"]]), i, True, []
    have: list[str] = []
    skip: list[tuple[str, int, int]] = []
    if not dataset_steps and limit is None:
        skip = [(p, m["first_ord"], m["last_ord"]) for p, m in parts_done.items()]
    elif resume and dataset_steps[0] in saved_input and limit is None:
        first = cfg.steps[dataset_steps[0]].label
        have = files_under(Checkpoints(out_dir, first).stage_dir("input"), ".parquet")
        skip = _pieces(have)
        if have:
            send(stats_actor, "add_reused", f"{first}:input_parts:{len(have)}")
    # `limit` sits between reading and the first step, so reads no longer fuse into it: a read task would then
    # wait for a CPU that the first step's actor pool holds while waiting for its input (a deadlock on small
    # machines). Reading is light; with a limit it reserves no CPU.
    ds = read_dataset(cfg.input, stats_actor, files, skip=_intervals(skip, files),
                      num_cpus=0 if limit is not None else None)
    if limit is not None:
        ds = ds.limit(limit)  # the first N records, so a resume may not skip any before limiting
        if not dataset_steps and parts_done:
            ds = ds.map_batches(_DropDone(frozenset(parts_done), keys, per_part), batch_format="pyarrow",
                                batch_size=None, zero_copy_batch=True)
    return ds, 0, False, have


def build_plan(cfg: PipelineConfig, out_dir: str, stats_actor: Any, files: list[tuple[str, str]],
               limit: int | None = None, resume: bool = False, reserve_after_barrier: bool = True):
    """The lazy Ray Dataset: read -> steps -> write (one summary row per written part).

    With checkpoints on, the input of a whole-dataset step that batch steps made is written per block as it
    streams by, and marked complete once materialised. A resume starts where `_source` says; after the last
    whole-dataset step it drops the parts the writer already finished (without whole-dataset steps the readers
    skip them). ``reserve_after_barrier``: Ray Data's per-operator reservation for everything that starts from a
    whole-dataset step's materialised input (`reserve_op_resources`)."""
    from curate.checkpoint import Checkpoints, done_parts, files_under
    from curate.stats import WAIT_STAGE, StageTimer, ask, settle

    keys, per_part = dict(files), cfg.input.docs_per_block
    enabled = cfg.output.checkpoints
    dataset_steps = [i for i, s in enumerate(cfg.steps) if issubclass(s.op, DatasetOperator)]
    # a whole-dataset step's input is checkpointed only when batch steps made it (extraction, models): input read
    # straight from the files, or another whole-dataset step's output (its input + a cheap map), costs no more to
    # remake than to read back (measured: checkpointing the input of a dedup-only run made it 26% slower)
    saved_input = {i for n, i in enumerate(dataset_steps) if enabled and any(
        not issubclass(s.op, DatasetOperator) for s in cfg.steps[(dataset_steps[n - 1] + 1 if n else 0):i])}
    parts_done = done_parts(out_dir) if resume else {}
    ds, start, jumped, have = _source(cfg, out_dir, stats_actor, files, limit, resume, dataset_steps, saved_input,
                                      parts_done)
    for i, step in enumerate(cfg.steps):
        if i < start:
            continue
        if issubclass(step.op, DatasetOperator):
            ck = Checkpoints(out_dir, step.label, stats_actor, enabled)
            ck_input = Checkpoints(out_dir, step.label, stats_actor, i in saved_input)
            timer = StageTimer(stats_actor, step.label)
            if not (jumped and i == start):
                ds = _checkpointed_input(ds, ck_input, keys, have if i == dataset_steps[0] else [], per_part)
            # from here on every execution starts from materialised blocks (this dataset and those made from it
            # share its context): the reservation setting for those
            ds.context.op_resource_reservation_enabled = reserve_after_barrier
            timer.done(WAIT_STAGE, ds.count())
            if i in saved_input and not (jumped and i == start):
                settle(stats_actor)  # the read tasks' last reports (files read, records skipped) are in
                ck.mark("input", {"pieces": files_under(ck.stage_dir("input"), ".parquet"),
                                  "carried": ask(stats_actor, "carried") or {}})
            op = step.op(step.params, step.label)
            ctx = RunContext(out_dir=out_dir, stats_actor=stats_actor, step_name=step.label,
                             file_index={url: i for i, (url, _key) in enumerate(files)}, source=cfg.input.source,
                             compression=cfg.output.compression, added=cfg.output.added, checkpoints=ck)
            ds = op.apply(ds, ctx)
            if step.op.marks_rows:
                ds = ds.map_batches(tombstone_new, fn_args=(step.label, step.keep_rejects), batch_format="pyarrow",
                                    batch_size=None, zero_copy_batch=True)
            if i == dataset_steps[-1] and parts_done:
                ds = ds.map_batches(_DropDone(frozenset(parts_done), keys, per_part), batch_format="pyarrow",
                                    batch_size=None, zero_copy_batch=True)
            continue
        res = step.resources
        compute = res.compute or step.op.default_compute
        kwargs: dict[str, Any] = dict(batch_size=None, batch_format="pyarrow", zero_copy_batch=True,
                                      num_cpus=res.num_cpus)
        if res.num_gpus:
            kwargs["num_gpus"] = res.num_gpus
        if compute == "actors":
            ds = ds.map_batches(_ActorStep, fn_constructor_args=(step, stats_actor),
                                compute=actor_pool(res), **kwargs)
        else:
            if res.concurrency:
                kwargs["concurrency"] = res.concurrency
            ds = ds.map_batches(_task_fn(step, stats_actor), **kwargs)
    return ds.map_batches(_write_fn(make_writer(cfg, out_dir, files), stats_actor), batch_size=None,
                          batch_format="pyarrow", zero_copy_batch=True, num_cpus=1)


def make_writer(cfg: PipelineConfig, out_dir: str, files: list[tuple[str, str]]):
    from curate.writer import DolmaWriter

    return DolmaWriter(out_dir, cfg.input.source, cfg.output.compression, cfg.output.added, dict(files),
                       cfg.output.write_doc_stats,
                       write_documents=not any(s.op.writes_documents for s in cfg.steps),
                       docs_per_part=cfg.input.docs_per_block)


def code_packages(cfg: PipelineConfig) -> list[str]:
    """Folders of the top-level packages a run needs on workers: ``curate`` and each step's operator package."""
    import curate

    mods = {curate.__name__: curate}
    for step in cfg.steps:
        top = step.op.__module__.split(".")[0]
        mods.setdefault(top, sys.modules[top])
    # a package travels as its folder; a plug-in that is a single module, as its .py file (never its site-packages)
    return [os.path.dirname(m.__file__) if hasattr(m, "__path__") else m.__file__ for _, m in sorted(mods.items())]


def configure_storage(cfg: PipelineConfig, out: str) -> None:
    """The fsspec options of each input pattern and of the output root, for this process and its workers."""
    from curate import storage

    storage.configure({**{p: cfg.input.storage_options for p in cfg.input.paths}, out: cfg.output.storage_options})


def submitted_job_env() -> dict[str, Any] | None:
    """The runtime env of the job this driver runs in (`curate submit`, `ray job submit`), else None. Its fields
    (working_dir, py_modules, env_vars) already apply, and Ray refuses a driver that sets them again."""
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    raw = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    return (json.loads(raw).get("runtime_env") or {}) if raw else None


def quiet_ray() -> None:
    """`-q`: only curate's summary and errors. Ray's notices (token auth on, progress bars off, Ray Data's plans and
    advice to use expressions) would otherwise drown them. Ray's C++ core logs to stderr on its own: its
    RAY_BACKEND_LOG_LEVEL announces itself on every process, so it is left alone."""
    import logging
    import warnings

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray\..*")


def end_local_ray() -> bool:
    """End the local Ray this process started (not a cluster it attached to) at once: SIGKILL to its processes,
    which `ray.shutdown()` would stop one by one, gracefully, in ~1-2 s that a short command pays in full
    (measured: 1.8 s of a 13 s minhash-only run). For a command about to exit, after its output is written and
    flushed. True if there was one.

    Every process under this one goes, by process id: Ray's own list holds only what the driver started (GCS,
    raylet, monitors), not what the raylet started (workers, actors, its two agents), which were left to notice
    the raylet's death by themselves and took 5-60 s to: a command started meanwhile shared the CPUs with them,
    and its dashboard agent found port 52365 still held and retried for 3.4 s (measured on 2 CPUs: back-to-back
    minhash-only runs spent 6.8 s instead of 2.7-3.7 s starting Ray)."""
    import psutil

    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if not ray.is_initialized() or node is None or not node.head:  # head: started here, not attached to
        return False
    try:
        tree = psutil.Process().children(recursive=True)
    except psutil.Error:
        tree = []
    node.kill_all_processes(check_alive=False, allow_graceful=False)
    for proc in tree:
        try:
            proc.kill()
        except psutil.Error:  # gone already
            pass
    return True


# A local Ray's own settings (a cluster's are its `ray start`'s). Ray ends a task worker that has been idle for 1 s
# while more worker processes than CPUs exist; an actor step's pool (and the stats actors) makes that so while it
# runs, so the task workers go, and every task after the actor step (a whole-dataset step's passes, the writer)
# waited for new worker processes to start and import Ray Data: measured on the bundled sample (`make run`, 114
# documents, 2 CPUs, 3 runs each), the plan phase 13.5 -> 12.4 s. Idle workers hold memory, not CPU; after a
# minute they go.
LOCAL_RAY_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


def ray_address(cfg: PipelineConfig, address: str | None) -> str | None:
    """The Ray to attach to: the command line's address, else the config's; None: the run starts a local Ray."""
    return address or cfg.ray.address or None


def init_ray(cfg: PipelineConfig, address: str | None, quiet: bool = False, worker_logs: bool = True,
             log_level: str | None = None) -> None:
    """Start or attach to Ray. ``worker_logs``: forward workers' stdout/stderr to this process (off under a
    `curate.console.RunConsole`: workers' lines stay in Ray's session logs). ``log_level``: of Ray's Python
    loggers in this process (default WARNING, ERROR when ``quiet``)."""
    import ray

    from curate import storage

    if quiet:
        quiet_ray()
    if ray.is_initialized():
        return
    addr = ray_address(cfg, address)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    log_opts = dict(log_to_driver=worker_logs, configure_logging=True,
                    logging_level=log_level or ("ERROR" if quiet else "WARNING"))
    env_vars = storage.env()
    if addr:
        # ship the framework and the package of every operator the config names (this project's stages or a
        # user's plug-in) to the cluster's workers; third-party dependencies come from the image
        job = submitted_job_env()
        runtime_env: dict[str, Any] = {"py_modules": code_packages(cfg)} if job is None else {}
        missing = {k: v for k, v in env_vars.items() if k not in ((job or {}).get("env_vars") or {})}
        if missing:
            runtime_env["env_vars"] = missing
        ray.init(address=addr, runtime_env=runtime_env or None, **log_opts)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=cfg.ray.include_dashboard,
                 runtime_env={"env_vars": env_vars} if env_vars else None, _system_config=LOCAL_RAY_SYSTEM_CONFIG,
                 **log_opts)


def reserve_op_resources(cfg: PipelineConfig, address: str | None, materialized: bool) -> bool:
    """Whether Ray Data reserves a share of the resources for each operator (``ray.op_resource_reservation``), for
    executions that read the input files (``materialized`` False) or that start from a whole-dataset step's
    materialised input (True).

    Unset, on a local Ray: on for the first, off for the second. The reservation sizes each operator's budget by
    the number of operators, not by the data: a map over materialised blocks (a whole-dataset step's stages, the
    decisions applied before writing, the steps after a barrier) then gets one task at a time on a small machine
    (measured on 2 CPUs: 4 blocks of 0.5 s take 1.78 s with it, 1.07 s without; a minhash-only run's signatures
    1.5-1.8 s vs 0.8-0.9 s). Reading and the batch steps fused into it keep it: without it, 4,000 pages through
    extract -> langid -> quality_signals -> exact_dedup took 49.9 s instead of 40.1 s (a third worker process
    joined the two extraction workers on two CPUs). On a cluster Ray's default (on) stays everywhere."""
    if cfg.ray.op_resource_reservation is not None:
        return cfg.ray.op_resource_reservation
    return ray_address(cfg, address) is not None or not materialized


def prepare_out_dir(out_dir: str, overwrite: bool, resume: bool = False) -> None:
    from curate import storage

    fs, path = storage.url_to_fs(out_dir)
    if resume:
        return  # checked against OUT/_run.json by the caller
    if fs.exists(path) and (fs.ls(path) if fs.isdir(path) else True):
        if not overwrite:
            raise FileExistsError(f"output {out_dir} exists and is not empty (use --overwrite to replace it, or "
                                  f"--resume to continue the run that wrote it)")
        if storage.is_local(fs):
            shutil.rmtree(path)
        else:
            fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)


def run_config(cfg: PipelineConfig) -> dict[str, Any]:
    """The config as stats.json and OUT/_run.json record it (what a resume compares, output path aside)."""
    return {"input": cfg.input.model_dump(), "output": {k: v for k, v in cfg.output.model_dump().items()
                                                         if k != "path"},
            "steps": [{"name": s.name, "label": s.label, **s.params.model_dump()} for s in cfg.steps]}


def log_path(out: str) -> str:
    """Where a run's Ray output goes under a `RunConsole`: OUT/logs/ray.log for a local output; for one on object
    storage (no appending there), a local file named after the output."""
    from curate import storage

    fs, path = storage.url_to_fs(out)
    if storage.is_local(fs):
        return os.path.join(path, "logs", "ray.log")
    import tempfile

    return os.path.join(tempfile.gettempdir(), "curate-logs", re.sub(r"[^\w.-]+", "_", out) + ".log")


def run_pipeline(cfg: PipelineConfig, out_dir: str | None = None, address: str | None = None,
                 limit: int | None = None, overwrite: bool = False, progress: bool = True,
                 resume: bool = False, console: Any = None) -> dict[str, Any]:
    """Validate inputs, then run (or, with ``resume``, go on with a run that was killed: see curate.checkpoint).
    Returns the final stats (also in OUT/stats.json). ``progress`` False silences Ray's Python loggers;
    ``console`` (a `curate.console.RunConsole`) takes Ray's output into a log file and shows curate's progress."""
    from curate import checkpoint, failpoints
    from curate.readers import expand_paths, split_known

    out = (out_dir or cfg.output.path).rstrip("/")
    configure_storage(cfg, out)
    files, unknown = split_known(expand_paths(cfg.input.paths), cfg.input.format)
    if not files:
        raise FileNotFoundError(f"no readable input files in {cfg.input.paths} (skipped: {unknown})")
    run = checkpoint.identity(run_config(cfg), files, limit)
    if resume:
        run = checkpoint.check_resume(out, run)
        checkpoint.remove_temporaries(out)
        previous = _load_stats(out)
        if previous and previous.get("status") == "done":
            return previous  # nothing left to do
    prepare_out_dir(out, overwrite, resume)
    if cfg.output.added is None:  # Dolma `added` = the run's start (UTC, seconds); a resume keeps the first one
        run.setdefault("added", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"added": run["added"]})})
    if not resume:
        checkpoint.save_run(out, run)
    if failpoints.armed():
        os.environ.setdefault(failpoints.PID_ENV, str(os.getpid()))  # workers inherit it: they kill the driver
    if console is not None:
        addr = ray_address(cfg, address)
        where = f"Ray at {addr}" if addr else "a local Ray"
        console.capture(log_path(out), f"curate: {cfg.path} -> {out} ({len(files)} input files, {where})",
                        append=resume)
    try:
        return _run(cfg, out, address, limit, resume, run, files, unknown, progress, console)
    finally:
        if console is not None:
            console.close()
            if _keep_log(console.log_path, out):
                console.log_path = f"{out}/logs/ray.log"


def _keep_log(path: str | None, out: str) -> bool:
    """An output on object storage gets the run's Ray log as OUT/logs/ray.log when the run ends (a local output
    has it there all along). True if it was copied there."""
    from curate import storage
    from curate.writer import atomic_write

    fs, _ = storage.url_to_fs(out)
    if path is None or storage.is_local(fs) or not os.path.exists(path):
        return False
    try:
        with open(path, "rb") as f:
            atomic_write(f"{out}/logs/ray.log", f.read())
    except OSError:  # the run's outcome is what matters; the log stays where it was written
        return False
    return True


def _run(cfg: PipelineConfig, out: str, address: str | None, limit: int | None, resume: bool, run: dict[str, Any],
         files: list[tuple[str, str]], unknown: list[str], progress: bool, console: Any) -> dict[str, Any]:
    import ray
    from ray.data import DataContext

    import curate
    from curate import checkpoint
    from curate.readers import file_size
    from curate.stats import RunStats, start_stats_actor

    t_init = time.time()
    if console is None:
        init_ray(cfg, address, quiet=not progress)
    else:  # everything Ray says goes to the console's log file, INFO included
        init_ray(cfg, address, worker_logs=False, log_level="INFO")
    phases = {"startup": t_init - curate.STARTED, "ray_init": time.time() - t_init}
    res = ray.cluster_resources()
    if ray_address(cfg, address) is None:  # a local Ray, just started
        start_task_workers(int(res.get("CPU", 1)))
    ctx = DataContext.get_current()
    # curate shows progress in its own step names (curate.console); Ray's bars only for `curate run -v`
    ctx.enable_progress_bars = console is None and progress
    ctx.execution_options.preserve_order = limit is not None  # `limit` must take the same documents each run
    from ray.data.context import DEFAULT_TARGET_MAX_BLOCK_SIZE

    ctx.target_max_block_size = cfg.ray.target_max_block_bytes or DEFAULT_TARGET_MAX_BLOCK_SIZE
    ctx.op_resource_reservation_enabled = reserve_op_resources(cfg, address, materialized=False)
    actor = start_stats_actor()
    summary_cfg = {"path": cfg.path, **run_config(cfg), "output": {**cfg.output.model_dump(), "path": out}}
    cluster = {"nodes": len([n for n in ray.nodes() if n.get("Alive")]), "cpus": res.get("CPU", 0),
               "gpus": res.get("GPU", 0)}
    sizes = [file_size(url) for url, _key in files]
    stats = RunStats(out, [s.label for s in cfg.steps] + ["write"], summary_cfg, len(files), unknown, actor,
                     cluster, bytes_total=sum(x or 0 for x in sizes))
    stats.phases.update(phases)
    if resume:
        stats.add_done_parts(list(checkpoint.done_parts(out).values()))
        checkpoint.remove(f"{out}/_work/_fragments")  # pieces of parts without a marker: redone whole
    stats.flush("running", force=True, with_timing=False)  # the actor is still starting: nothing to ask it yet
    # stats.json keeps moving even while a whole-dataset step blocks the driver in build_plan (materialising)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(1.0):
            try:
                doc = stats.flush("running")
            except OSError:  # a full or read-only disk: the run's own writes will report it
                continue
            if doc is not None and console is not None:
                try:
                    console.update(doc)
                except Exception:  # noqa: BLE001 (a display problem must not stop stats.json from moving)
                    pass

    beat = threading.Thread(target=heartbeat, name="curate-stats", daemon=True)
    beat.start()
    status = "failed"
    try:
        t = time.time()
        ds = build_plan(cfg, out, actor, files, limit, resume,
                        reserve_after_barrier=reserve_op_resources(cfg, address, materialized=True))
        # a plan with whole-dataset steps runs everything up to the last one's barrier while it is built
        stats.phases["plan"] = time.time() - t
        t = time.time()
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            stats.add_parts(batch.to_pylist())
        stats.phases["stream"] = time.time() - t
        t = time.time()
        stats.add_parts(make_writer(cfg, out, files).finish_fragments(partial=limit is not None))
        stats.phases["finish"] = time.time() - t
        status = "done"
    except Exception as e:  # noqa: BLE001
        raise _output_error(e) or e
    finally:
        stop.set()
        beat.join()
        try:
            final = stats.flush(status, force=True)  # what is returned is exactly what stats.json says
        except OSError:
            if status == "done":
                raise
        ray.kill(actor)
    if status == "done":
        _remove_scratch(out)
    assert final is not None
    return final


def start_task_workers(cpus: int) -> None:
    """On a local Ray just started: one small task per CPU, not waited for, that imports what every task of the
    plan needs (Ray Data, the readers). Ray prestarts one worker process per CPU, but the run's
    actors (curate's stats actor, Ray Data's) take two of them, so without this the second task of a stage waits
    for a new worker process to start and import Ray Data (~0.7 s on 2 CPUs; measured: a minhash-only run's
    signatures 1.6 -> 0.9 s, the command 9.9 -> 9.5 s, medians of 3)."""
    import ray

    warm = ray.remote(num_cpus=1)(_import_task_modules)
    for _ in range(cpus):
        warm.remote()


def _import_task_modules() -> bool:
    import ray.data  # noqa: F401  (public: what a map task deserialises needs it)

    import curate.readers  # noqa: F401

    return True


def _load_stats(out: str) -> dict[str, Any] | None:
    import json

    from curate import storage

    try:
        with storage.open(f"{out}/stats.json", "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


# errors of the place output goes, not of the code: the user fixes them (space, permissions) and resumes
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
_ERRNO_TEXT = re.compile(r"\w*Error: \[Errno (\d+)\] ([^\n]+?)(?:: '([^'\n]*)')?$", re.M)


def _output_error(e: BaseException) -> OSError | None:
    """The OSError (disk full, read-only, no permission) behind a failed run, if that is what ended it, so the
    user reads one line, not a Ray stack trace. Ray hands a plain task's exception back as its cause, but a Ray
    Data task's only as the text of the worker's traceback (the exception object does not survive), so that
    text is read too: Python writes an OSError as ``OSError: [Errno 28] No space left on device: 'path'``."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno in _OUTPUT_ERRNOS:
            return _resumable(x.errno, x.strerror, x.filename)
        cause = getattr(x, "cause", None)
        x = cause if isinstance(cause, BaseException) else (x.__cause__ or x.__context__)
    for m in _ERRNO_TEXT.finditer(str(e)):
        if int(m.group(1)) in _OUTPUT_ERRNOS:
            return _resumable(int(m.group(1)), m.group(2), m.group(3))
    return None


class OutputError(OSError):
    """The output cannot be written (full, read-only, not permitted): the user's to fix, then resume."""

    hint = "free space or fix permissions, then rerun with --resume"


def _resumable(code: int, text: str | None, path: str | None) -> OSError:
    return OutputError(code, text or os.strerror(code), path)


def _remove_scratch(out: str) -> None:
    """Whole-dataset steps keep checkpoints and decisions under OUT/_work while the run goes; spent once it is done."""
    from curate.checkpoint import remove

    remove(f"{out}/_work")
