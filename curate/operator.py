"""The one operator contract every stage implements, and the registry that maps pipeline.yaml names to classes.

Two kinds of operator exist, because some work is per document and some is over the whole corpus:

* ``BatchOperator``: ``setup()`` once per worker process (load a model), then ``process(table) -> table`` on a
  batch of *live* rows. It returns the same rows in the same order with new attribute columns, and may mark
  rows as dropped or failed with :func:`mark`. It never deletes rows: the runner turns marked rows into
  tombstones and counts them. Extra rows after the input rows are new documents (e.g. synthetic rephrasings).
* ``DatasetOperator``: ``apply(ds, ctx) -> ds`` over a whole ``ray.data.Dataset`` (dedup, global thresholds,
  sharding), for steps that need to see every document before deciding.

A step's name in pipeline.yaml is the operator's ``name``; its keys are the fields of its ``Params`` model
(pydantic, ``extra="forbid"``), so a typo fails validation with the key path before any work starts. The
attribute columns an operator makes are declared in ``outputs`` so filter expressions can be checked then too.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
import orjson
import pyarrow as pa
import re

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from curate import schema

if TYPE_CHECKING:  # pragma: no cover
    import ray.data


def _check_reason(reason: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", reason):
        raise ValueError(f"reason {reason!r} must be letters, digits and underscores")
    return reason


# A drop reason as counted in stats and shown on the dashboard: one token, so it can key JSON and URLs.
Reason = Annotated[str, AfterValidator(_check_reason)]


class Params(BaseModel):
    """Base of every operator's parameters. Unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(BaseModel):
    """How the runner schedules a step. Every operator accepts these keys in pipeline.yaml under ``resources``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per task or actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per actor (model-bound steps on clusters).")
    concurrency: int | None = Field(
        None, ge=1, description="Actors in the pool (actor steps) or max parallel tasks; default: Ray decides."
    )
    compute: Literal["tasks", "actors"] | None = Field(
        None, description="Override the operator's default: tasks fuse with neighbours, actors keep a model warm."
    )


@dataclass(frozen=True)
class RunContext:
    """What a dataset operator may need from the run: where output goes and the stats sink."""

    out_dir: str
    stats_actor: Any
    step_name: str
    file_index: dict[str, int]  # input file URL -> its index in the sorted input list (stable node ids)
    source: str = "web"  # input.source: the documents/<source>/ folder
    compression: str = "zstd"  # output.compression
    added: str | None = None  # output.added
    # the step's checkpoints (OUT/_work/<step>/): wrap each internal stage in `checkpoints.value` or
    # `checkpoints.dataset` so a resumed run reuses what a killed one finished
    checkpoints: Any = None


class Operator(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    # Attribute columns this operator adds (full names ``<name>__<tagger>__<key>``) and their Arrow types.
    outputs: ClassVar[dict[str, pa.DataType]] = {}
    # "tasks": stateless or cheap state, fused with neighbouring steps into one Ray task per block.
    # "actors": expensive model, kept warm in an actor pool.
    default_compute: ClassVar[Literal["tasks", "actors"]] = "tasks"
    # A step that writes the documents itself (sharding): it must be last, and the runner's writer then writes
    # only the per-document stats and part markers.
    writes_documents: ClassVar[bool] = False
    # A whole-dataset step that drops rows itself (select) rather than leaving the decision to `filter`: the runner
    # then stamps its marked rows as tombstones of this step, as it does after every batch step.
    marks_rows: ClassVar[bool] = False
    # Rows this step marks keep their text to the writer, which writes them to OUT/rejects/<step>/ with the reason
    # and detail, so a user can read what was rejected (rephrase's failed generations). The step bounds how many
    # (it sets the text of the rest to null); every other step's marked rows lose their text at once.
    keeps_rejected_text: ClassVar[bool] = False
    # Parameters that name an attribute an earlier step must make (checked at validation, before any work).
    attribute_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Params, step_name: str | None = None):
        self.params = params
        self.step_name = step_name or self.name

    @classmethod
    def output_columns(cls, params: Params) -> dict[str, pa.DataType]:
        """The columns this step makes with these parameters (default: ``outputs``). Override when they depend
        on parameters (langid writes one column per configured language)."""
        return dict(cls.outputs)

    def preflight(self) -> None:
        """Load what this step needs (models, tokenizers) where it will run, before a submitted job does any work
        (`curate.preflight`): raise with a clear message if it cannot. Default: nothing to load."""

    @classmethod
    def check(cls, params: Params, available: dict[str, pa.DataType]) -> None:
        """Validate against the columns earlier steps make (raise ValueError). Default: the attribute_params."""
        for field in cls.attribute_params:
            attr = getattr(params, field, None)
            if attr is not None and attr not in available:
                raise ValueError(f"{field}: {attr!r} is made by no earlier step")


class BatchOperator(Operator):
    def setup(self) -> None:
        """Load models or compile patterns. Called once per worker process (task) or actor, never per batch."""

    @abstractmethod
    def process(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with this step's attribute columns added; mark rows instead of deleting them."""

    def teardown(self) -> None:
        """Release child processes or handles; called when the worker is torn down (best effort)."""

    def preflight(self) -> None:
        """A batch step loads what it needs in ``setup()``: load it once, then release it."""
        self.setup()
        self.teardown()


class DatasetOperator(Operator):
    def materialize(self, ds: "ray.data.Dataset", ctx: RunContext):
        """Every whole-dataset step starts here. The runner hands over its input materialised in Ray's object
        store (it is read more than once below), checkpointed and timed (``materialize_input``); this starts the
        step's stage timer. Returns (materialised dataset, timer)."""
        from curate.stats import StageTimer

        return ds.materialize(), StageTimer(ctx.stats_actor, self.step_name)

    def stage_dir(self, ctx: RunContext, stage: str) -> str:
        """Where a stage keeps its files (OUT/_work/<step>/<stage>; emptied before the stage is redone)."""
        return f"{ctx.out_dir}/_work/{self.step_name}/{stage}"

    def stage(self, ctx: RunContext, stage: str, compute: Callable[[], Any]) -> Any:
        """Run ``compute`` (a JSON-able result; files under stage_dir) as a checkpointed stage: a resumed run gets
        the stored result back without running it."""
        return compute() if ctx.checkpoints is None else ctx.checkpoints.value(stage, compute)

    def stage_dataset(self, ctx: RunContext, stage: str, compute: Callable[[], Any]) -> "ray.data.Dataset":
        """A checkpointed stage whose result is a Dataset (materialised; a resume reads its blocks back)."""
        return compute().materialize() if ctx.checkpoints is None else ctx.checkpoints.dataset(stage, compute)

    def stage_done(self, ctx: RunContext, stage: str) -> Any:
        """The stored result of a stage a killed attempt finished (None if it did not): for stages the operator
        runs in parallel itself and marks with `stage_mark` as each ends."""
        if ctx.checkpoints is None:
            return None
        found = ctx.checkpoints.load(stage)
        if found is not None:
            ctx.checkpoints.reused(stage)
        return None if found is None else found["value"]

    def stage_mark(self, ctx: RunContext, stage: str, value: Any) -> None:
        if ctx.checkpoints is not None:
            ctx.checkpoints.mark(stage, value)

    @abstractmethod
    def apply(self, ds: "ray.data.Dataset", ctx: RunContext) -> "ray.data.Dataset":
        """Transform the whole dataset (live rows and tombstones alike; keep tombstones untouched)."""


# Operators come in through this entry-point group only: this project's stages are declared in its pyproject.toml
# like anyone else's, and a user's package that declares the group is picked up after `pip install`.
ENTRY_POINT_GROUP = "curate.operators"


@dataclass(frozen=True)
class Plugin:
    """Where an operator came from: the distribution that declared it (for `curate operators` and errors)."""

    cls: type[Operator]
    distribution: str
    version: str
    target: str  # the entry point's `module:attr`


class PluginError(TypeError):
    """An operator entry point that cannot be used (load failure, wrong type, two packages, one name)."""


def check_operator(cls: Any, name: str | None = None) -> type[Operator]:
    """The rules every operator class meets before it can run: an Operator subclass with a name (equal to its
    entry point's), whose output columns are Dolma attribute names ``<name>__<tagger>__<key>`` or stats-only
    ``_stat_<name>__<key>`` columns."""
    if not (isinstance(cls, type) and issubclass(cls, Operator)):
        raise PluginError(f"{cls!r} is not a curate Operator subclass")
    if not getattr(cls, "name", None):
        raise PluginError(f"{cls.__qualname__} has no name")
    if name is not None and cls.name != name:
        raise PluginError(f"entry point {name!r} loads {cls.__qualname__}, whose name is {cls.name!r}")
    for col in cls.outputs:
        if col.startswith(schema.STAT_PREFIX):
            problem = None if col[len(schema.STAT_PREFIX):].startswith(cls.name + "__") else \
                f"{col!r}: a stats-only column is {schema.STAT_PREFIX}{cls.name}__<key>"
        else:
            problem = schema.check_attribute_name(col, cls.name)
        if problem:
            raise PluginError(f"{cls.name}: output column {problem}")
    return cls


_PLUGINS: dict[str, Plugin] | None = None


def plugins() -> dict[str, Plugin]:
    """Every operator declared in the ``curate.operators`` entry-point group, loaded once per process."""
    global _PLUGINS
    if _PLUGINS is not None:
        return dict(_PLUGINS)
    from importlib.metadata import entry_points

    found: dict[str, Plugin] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if ep.name in found:
            prev = found[ep.name]
            if (prev.distribution, prev.target) == (dist, ep.value):
                continue  # the same distribution seen twice on sys.path
            raise PluginError(f"operator name {ep.name!r} is declared by two packages: {prev.distribution} "
                              f"({prev.target}) and {dist} ({ep.value}); uninstall or rename one")
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001  (a broken plug-in is named, not a stack trace)
            raise PluginError(f"operator {ep.name!r} from {dist} ({ep.value}) failed to load: "
                              f"{type(e).__name__}: {e}") from e
        found[ep.name] = Plugin(check_operator(cls, ep.name), dist, version, ep.value)
    _PLUGINS = found
    return dict(found)


def registry() -> dict[str, type[Operator]]:
    """pipeline.yaml step names -> operator classes, from the entry points (see :func:`plugins`)."""
    return {name: p.cls for name, p in plugins().items()}


# A whole-dataset step's pass over a materialised input of at most this many bytes may run as one task over all
# of it instead of a distributed pass (a Ray Data shuffle or a pass per block): the same function over the same
# rows, so the same result (each step tests both paths), but without the seconds of fixed cost every Ray Data
# execution has whatever its size, which made each whole-dataset step of a 91-document sample take seconds to
# tens of seconds. 64 MiB of keys/edges/signatures is ~200k documents' worth. CURATE_ONE_TASK_BYTES sets it for a
# process (0: always the distributed pass; tests and benchmarks of the distributed paths on small inputs).
ONE_TASK_BYTES = int(os.environ.get("CURATE_ONE_TASK_BYTES") or 64 << 20)


def fits_one_task(ds: "ray.data.Dataset") -> bool:
    """A materialised, non-empty dataset small enough (ONE_TASK_BYTES) for one task to hold all of it."""
    return ds.count() > 0 and ds.size_bytes() <= ONE_TASK_BYTES


def arrow_blocks(ds: "ray.data.Dataset") -> list:
    """Object refs of the dataset's non-empty Arrow blocks, in block order, for code that runs its own Ray tasks
    over blocks (one task, a shuffle, the shard writer).

    Ray Data may hold empty blocks with no columns at all (a read or a map that yielded nothing, depending on how
    the streaming executor split the work); ``to_arrow_refs`` hands those over too, and a task reading curate's
    columns from one fails (``KeyError: '_fate'``, seen on a CI run and not here). ``map_batches`` never passes
    empty blocks to a function; this gives the plain-task paths the same guarantee. Blocks whose row count the
    metadata does not know are kept."""
    return [e.ref for bundle in ds.iter_internal_ref_bundles() for e in bundle.blocks if e.metadata.num_rows != 0]


def mark(
    table: pa.Table,
    mask: np.ndarray | pa.Array | list[bool],
    fate: str,
    reasons: str | list[str | None] | np.ndarray,
    details: list[str | None] | None = None,
) -> pa.Table:
    """Mark the rows where ``mask`` is true as dropped or failed, keeping any earlier mark on a row.

    ``reasons`` is one reason for all marked rows or one per row. The runner records the step name and turns
    marked rows into tombstones.
    """
    if fate not in (schema.DROP, schema.ERROR):
        raise ValueError(f"fate must be {schema.DROP!r} or {schema.ERROR!r}")
    n = table.num_rows
    m = np.asarray(mask, dtype=bool)
    if m.shape != (n,):
        raise ValueError(f"mask has shape {m.shape}, table has {n} rows")
    if not m.any():
        return table
    old_fate = _column_or_nulls(table, schema.FATE)
    old_reason = _column_or_nulls(table, schema.REASON)
    old_detail = _column_or_nulls(table, schema.DETAIL)
    reason_list = [reasons] * n if isinstance(reasons, str) else list(reasons)
    detail_list = details if details is not None else [None] * n
    fates, rs, ds = old_fate.to_pylist(), old_reason.to_pylist(), old_detail.to_pylist()
    for i in np.flatnonzero(m):
        if fates[i] is None:
            fates[i], rs[i], ds[i] = fate, reason_list[i], detail_list[i]
    table = _set(table, schema.FATE, pa.array(fates, pa.string()))
    table = _set(table, schema.REASON, pa.array(rs, pa.string()))
    return _set(table, schema.DETAIL, pa.array(ds, pa.string()))


def _column_or_nulls(table: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    if name in table.column_names:
        return table.column(name)
    return pa.nulls(table.num_rows, pa.string())


def _set(table: pa.Table, name: str, col: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, col)
    return table.append_column(name, col)


def merge_metadata(meta: str | None, extra: dict[str, Any]) -> str:
    """A document's metadata JSON with ``extra`` keys set (keys sorted, so the bytes depend only on the content)."""
    d = orjson.loads(meta) if meta else {}
    d.update(extra)
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode()


def set_column(table: pa.Table, name: str, col: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Add or replace a column (operators use this to write attributes)."""
    return _set(table, name, col)
