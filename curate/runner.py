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
import os
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
        t0, start = time.perf_counter(), time.time()
        n = table.num_rows
        alive = pc.is_null(table.column(schema.FATE)).to_numpy(zero_copy_only=False)
        alive_idx = np.flatnonzero(alive)
        live = table.take(alive_idx) if len(alive_idx) < n else table
        out = self._process(live) if live.num_rows else live
        out = self._ensure_outputs(out)
        out = self._mark_born(out, live.num_rows)
        out = tombstone_new(out, self.label)
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
            import ray

            from curate.stats import worker_id

            ray.get(self.stats_actor.add_time.remote(self.label, time.perf_counter() - t0, live.num_rows,
                                                     worker_id(), start))
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

def tombstone_new(out: pa.Table, label: str) -> pa.Table:
    """Rows marked by step ``label``: record the step, free text and payload (the writer counts them). Used after
    batch steps and whole-dataset steps alike."""
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
        import ray

        from curate.stats import worker_id

        t0, start = time.perf_counter(), time.time()
        out = writer(table)
        if stats_actor is not None:
            ray.get(stats_actor.add_time.remote("write", time.perf_counter() - t0, table.num_rows, worker_id(),
                                                start))
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

    if res.concurrency:
        return ActorPoolStrategy(size=res.concurrency)
    total = ray.cluster_resources()
    if res.num_gpus:
        most = int(total.get("GPU", 0) // res.num_gpus)
    else:
        most = int(total.get("CPU", 1) // res.num_cpus)
    # start at full size: the fused task steps need every worker from the first block on, and a pool that grows
    # only once a queue builds up leaves cores idle through the start of the run
    return ActorPoolStrategy(min_size=1, max_size=max(1, most), initial_size=max(1, most))


def build_plan(cfg: PipelineConfig, out_dir: str, stats_actor: Any, files: list[tuple[str, str]],
               limit: int | None = None):
    """The lazy Ray Dataset: read -> steps -> write (one summary row per written part)."""
    from curate.readers import read_dataset
    from curate.writer import DolmaWriter

    ds = read_dataset(cfg.input, stats_actor, files)
    if limit is not None:
        ds = ds.limit(limit)
    for step in cfg.steps:
        if issubclass(step.op, DatasetOperator):
            op = step.op(step.params, step.label)
            ctx = RunContext(out_dir=out_dir, stats_actor=stats_actor, step_name=step.label,
                             file_index={url: i for i, (url, _key) in enumerate(files)}, source=cfg.input.source,
                             compression=cfg.output.compression, added=cfg.output.added)
            ds = op.apply(ds, ctx)
            if step.op.marks_rows:
                ds = ds.map_batches(tombstone_new, fn_args=(step.label,), batch_format="pyarrow", batch_size=None,
                                    zero_copy_batch=True)
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
    writer = DolmaWriter(out_dir, cfg.input.source, cfg.output.compression, cfg.output.added, dict(files),
                         cfg.output.write_doc_stats,
                         write_documents=not any(s.op.writes_documents for s in cfg.steps))
    return ds.map_batches(_write_fn(writer, stats_actor), batch_size=None, batch_format="pyarrow",
                          zero_copy_batch=True, num_cpus=1)


def code_packages(cfg: PipelineConfig) -> list[str]:
    """Folders of the top-level packages a run needs on workers: ``curate`` and each step's operator package."""
    import curate

    mods = {curate.__name__: curate}
    for step in cfg.steps:
        top = step.op.__module__.split(".")[0]
        mods.setdefault(top, sys.modules[top])
    # a package travels as its folder; a plug-in that is a single module, as its .py file (never its site-packages)
    return [os.path.dirname(m.__file__) if hasattr(m, "__path__") else m.__file__ for _, m in sorted(mods.items())]


def init_ray(cfg: PipelineConfig, address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    addr = address or cfg.ray.address
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if addr:
        # ship the framework and the package of every operator the config names (this project's stages or a
        # user's plug-in) to the cluster's workers; third-party dependencies come from the image
        ray.init(address=addr, log_to_driver=True, runtime_env={"py_modules": code_packages(cfg)})
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=cfg.ray.include_dashboard,
                 log_to_driver=True, configure_logging=True, logging_level="WARNING")


def prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(out_dir)
    if fs.exists(path) and (fs.ls(path) if fs.isdir(path) else True):
        if not overwrite:
            raise FileExistsError(f"output {out_dir} exists and is not empty (use --overwrite to replace it)")
        if fs.protocol in ("file", "local") or "file" in fs.protocol:
            shutil.rmtree(path)
        else:
            fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)


def run_pipeline(cfg: PipelineConfig, out_dir: str | None = None, address: str | None = None,
                 limit: int | None = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Validate inputs, then run. Returns the final stats (also in OUT/stats.json)."""
    import ray
    from ray.data import DataContext

    from curate.readers import expand_paths, split_known
    from curate.stats import RunStats, StatsActor

    out = (out_dir or cfg.output.path).rstrip("/")
    if cfg.output.added is None:  # Dolma `added` = the run's start (UTC, seconds), recorded in stats.json
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"added": now})})
    files, unknown = split_known(expand_paths(cfg.input.paths), cfg.input.format)
    if not files:
        raise FileNotFoundError(f"no readable input files in {cfg.input.paths} (skipped: {unknown})")
    prepare_out_dir(out, overwrite)
    init_ray(cfg, address)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    if not progress:  # -q: Ray Data's per-dataset INFO lines (plans, "execution finished") would drown the summary
        import logging

        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx.execution_options.preserve_order = limit is not None  # `limit` must take the same documents each run
    from ray.data.context import DEFAULT_TARGET_MAX_BLOCK_SIZE

    ctx.target_max_block_size = cfg.ray.target_max_block_bytes or DEFAULT_TARGET_MAX_BLOCK_SIZE
    actor = StatsActor.remote()
    summary_cfg = {"path": cfg.path, "input": cfg.input.model_dump(), "output": {**cfg.output.model_dump(),
                   "path": out}, "steps": [{"name": s.name, "label": s.label, **s.params.model_dump()}
                                           for s in cfg.steps]}
    res = ray.cluster_resources()
    cluster = {"nodes": len([n for n in ray.nodes() if n.get("Alive")]), "cpus": res.get("CPU", 0),
               "gpus": res.get("GPU", 0)}
    stats = RunStats(out, [s.label for s in cfg.steps] + ["write"], summary_cfg, len(files), unknown, actor,
                     cluster)
    stats.flush("running", force=True)
    # stats.json keeps moving even while a whole-dataset step blocks the driver in build_plan (materialising)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(1.0):
            stats.flush("running")

    beat = threading.Thread(target=heartbeat, name="curate-stats", daemon=True)
    beat.start()
    status = "failed"
    try:
        ds = build_plan(cfg, out, actor, files, limit)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            stats.add_parts(batch.to_pylist())
        status = "done"
    finally:
        stop.set()
        beat.join()
        final = stats.flush(status, force=True)  # what is returned is exactly what stats.json says
        ray.kill(actor)
    if status == "done":
        _remove_scratch(out)
    assert final is not None
    return final


def _remove_scratch(out: str) -> None:
    """Whole-dataset steps keep decisions under OUT/_work while the run streams; they are spent once it is done."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(f"{out}/_work")
    if fs.exists(path):
        fs.rm(path, recursive=True)
