"""curate's Python surface: what `curate run` does, from a script or a notebook.

    import curate
    run = curate.Pipeline("pipeline.yaml").run("out/sample", limit=1000)
    run.steps()                       # the per-step table as a pandas DataFrame
    run.dropped(reason="gopher_short_doc", n=3)   # dropped documents with step, reason, detail, provenance
    scored = curate.apply("gopher", df)           # one step over a DataFrame, in this process, no Ray

The command line is a thin shell over these: `curate run` builds a `Pipeline` and calls `run`, so a pipeline run
from Python writes the same bytes as the same config from the command line, and a mistake in a step name or a
parameter is the same one line (`ConfigError`, with the key path) from both.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

import pyarrow as pa
import yaml

from curate import schema
from curate.config import ConfigError, PipelineConfig, load_config, parse_config, parse_step

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["pandas", "arrow", "ray", "datasets", "records"]


class Pipeline:
    """A validated pipeline, built from a pipeline.yaml path, a dict with the same keys, or a list of steps
    (``input``/``output``/``ray`` then given as keywords). Validation is `pipeline.yaml`'s: unknown operators,
    parameters and expressions over columns no earlier step makes are one `ConfigError` listing every problem."""

    def __init__(self, config: str | Path | dict[str, Any] | list[dict[str, Any]] | PipelineConfig, *,
                 input: dict[str, Any] | None = None, output: dict[str, Any] | None = None,  # noqa: A002
                 ray: dict[str, Any] | None = None):
        self.path: str | None = None
        if isinstance(config, PipelineConfig):
            if config.path is None:
                raise TypeError("a PipelineConfig without its file: pass the dict or the path instead")
            config = config.path
        if isinstance(config, (str, Path)):
            self.path = str(config)
            self.config = load_config(config)
            self.raw: dict[str, Any] = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
        else:
            if isinstance(config, list):
                raw: dict[str, Any] = {"input": input, "steps": config}
                if output is not None:
                    raw["output"] = output
                if ray is not None:
                    raw["ray"] = ray
            elif isinstance(config, dict):
                raw = copy.deepcopy(config)
                for key, value in (("input", input), ("output", output), ("ray", ray)):
                    if value is not None:
                        raw[key] = value
            else:
                raise TypeError(f"Pipeline(config): a path, a dict or a list of steps, not {type(config).__name__}")
            self.raw = raw
            self.config = parse_config(raw, None)

    @property
    def steps(self) -> list[str]:
        """Step labels in order (``filter#2`` for a second filter): the names stats and attributes use."""
        return [s.label for s in self.config.steps]

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The pipeline as pipeline.yaml text (written to ``path`` when given); loads back to the same steps."""
        text = yaml.safe_dump(self.raw, sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def run(self, output: str | None = None, *, limit: int | None = None, resume: bool = False,
            overwrite: bool = False, address: str | None = None, progress: bool = False,
            console: Any = None) -> "Run":
        """Run it, exactly as `curate run` does (the same function), and return the finished `Run`. ``output``
        overrides ``output.path``; ``limit`` processes the first N documents in file order; ``resume`` goes on
        with a killed run; ``address`` attaches to a Ray cluster. Ray's own output is kept quiet unless
        ``progress``."""
        from curate.runner import run_pipeline

        if resume and overwrite:
            raise ConfigError(["resume and overwrite exclude each other"])
        out = output or self.config.output.path
        stats = run_pipeline(self.config, out, address=address, limit=limit, overwrite=overwrite,
                             progress=progress, resume=resume, console=console)
        return Run(out, stats)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"Pipeline({' -> '.join(self.steps)}{where})"


def open(path: str | Path) -> "Run":  # noqa: A001 (curate.open, as the docs name it)
    """A run's output (local or object storage, finished or still running)."""
    run = Run(str(path))
    run.stats  # noqa: B018 (fails now, with one clear line, on a path that is not a curate output)
    return run


class Run:
    """One output folder: its stats, its documents, what was dropped and why. Read through `curate.storage`, so
    s3:// and gs:// outputs read as local ones (storage options from the environment, as `curate dashboard`)."""

    def __init__(self, path: str, stats: dict[str, Any] | None = None):
        from curate.dashboard.run import Run as _Reader

        self.path = str(path).rstrip("/")
        self._reader = _Reader(self.path)
        self._stats = stats

    @property
    def stats(self) -> dict[str, Any]:
        """stats.json (re-read while the run is going on)."""
        from curate.dashboard.run import RunError

        if self._stats is None or self._stats.get("status") != "done":
            try:
                self._stats = self._reader.stats()
            except RunError as e:
                raise FileNotFoundError(str(e)) from None
        return self._stats

    @property
    def status(self) -> str:
        return str(self.stats.get("status"))

    def steps(self) -> "pd.DataFrame":
        """The per-step table (`curate run`'s): documents in and out, dropped and errors by reason, seconds."""
        import pandas as pd

        rows = []
        for s in self.stats["steps"]:
            rows.append({"step": s["step"], "in": s["in"], "out": s["out"],
                         "dropped": sum(s["dropped"].values()), "errors": sum(s["errors"].values()),
                         "seconds": s.get("seconds"), "reasons": {**s["dropped"], **s["errors"]},
                         "edited": {k: v["documents"] for k, v in (s.get("edited") or {}).items()}})
        return pd.DataFrame(rows)

    def docs(self, fate: str | None = None, step: str | None = None, reason: str | None = None,
             columns: Iterable[str] | None = None, format: Format = "pandas") -> Any:  # noqa: A002
        """Every input document's row of the per-document stats (OUT/stats/docs/): id, fate (kept, drop,
        error), the step and reason that ended it, detail, provenance (file, ord, url, record_id, offset),
        language, characters, the scalar scores and the edits. Filtered by ``fate``/``step``/``reason``."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        files = [p for p, _ in self._reader.doc_stats_files()]
        if not files:
            raise FileNotFoundError(f"{self.path}/stats/docs/: no per-document stats (output.write_doc_stats off, "
                                    "or the run has written no part yet)")
        tables = []
        for f in files:
            with self._reader.open(f) as fh:
                tables.append(pq.read_table(fh))
        table = pa.concat_tables(tables, promote_options="default")
        for col, value in (("fate", fate), ("step", step), ("reason", reason)):
            if value is not None:
                table = table.filter(pc.equal(table.column(col), value))
        if columns is not None:
            table = table.select(list(columns))
        return _convert(table, format)

    def dropped(self, reason: str | None = None, step: str | None = None, n: int | None = None,
                text: bool = True) -> "pd.DataFrame":
        """Dropped documents (and errors), with step, reason, detail and provenance; with ``text`` their text
        where the output kept it (`output.rejects: true` keeps every dropped document's text under
        OUT/rejects/; otherwise only steps that always keep theirs). ``n``: the first n per reason."""
        import pandas as pd

        df = self.docs(step=step, reason=reason)
        df = df[df["fate"] != "kept"]
        if n is not None:
            df = df.groupby("reason", sort=True, group_keys=False).head(n)
        df = df.reset_index(drop=True)
        if text:  # each step's rejects read once, not once per document
            texts = {st: self._rejects(st) for st in set(df["step"]) if isinstance(st, str)}
            df["text"] = pd.Series([texts.get(st, {}).get(doc_id) for doc_id, st in zip(df["id"], df["step"])],
                                   dtype="object")
        return df

    def _rejects(self, step: str) -> dict[str, str]:
        """id -> text of the documents ``step`` dropped with their text kept (OUT/rejects/<step>/)."""
        from curate.dashboard.run import _lines

        root = f"{self._reader.path}/rejects/{step.replace('#', '_')}"
        try:
            files = sorted(p for p in self._reader.fs.find(root) if ".jsonl" in p.rsplit("/", 1)[-1])
        except FileNotFoundError:
            return {}
        out: dict[str, str] = {}
        for f in files:
            for line in _lines(self._reader.fs, f):
                d = json.loads(line)
                out[d["id"]] = d.get("text")
        return out

    def documents(self, format: Format = "pandas") -> Any:  # noqa: A002
        """The kept documents (OUT/documents/, Dolma JSON lines) in document-file order: a pandas DataFrame, an
        Arrow table, a Ray Dataset, a Hugging Face `datasets.Dataset` (needs `datasets` installed) or a list of
        dicts."""
        from curate.dashboard.run import _lines

        rows = [json.loads(line) for f in self._reader.document_files() for line in _lines(self._reader.fs, f)]
        for r in rows:
            r["metadata"] = json.dumps(r.get("metadata") or {}, ensure_ascii=False, sort_keys=True)
        table = pa.Table.from_pylist(rows, schema=_DOC_SCHEMA) if rows else _DOC_SCHEMA.empty_table()
        return _convert(table, format)

    def attributes(self, name: str, format: Format = "pandas") -> Any:  # noqa: A002
        """One attribute set (``langid``, ``gopher``, …; the step label with # as _) as one row per kept
        document: id, then each key's spans ([[start, end, value], ...])."""
        from curate.dashboard.run import _lines

        root = f"{self._reader.path}/attributes/{name.replace('#', '_')}"
        try:
            files = sorted(p for p in self._reader.fs.find(root) if ".jsonl" in p.rsplit("/", 1)[-1])
        except FileNotFoundError:
            files = []
        if not files:
            raise FileNotFoundError(f"{self.path}/attributes/{name}: no such attribute set")
        rows = []
        for f in files:
            for line in _lines(self._reader.fs, f):
                d = json.loads(line)
                rows.append({"id": d["id"], **d["attributes"]})
        return _convert(pa.Table.from_pylist(rows), format)

    def __repr__(self) -> str:
        t = self.stats["totals"]
        return (f"Run({self.path}: {self.status}, {t['documents_in']} in, {t['documents_out']} out, "
                f"{t['dropped']} dropped, {t['errors']} errors)")


_DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                         ("added", pa.string()), ("created", pa.string()), ("metadata", pa.string())])


def _convert(table: pa.Table, format: Format) -> Any:  # noqa: A002
    if format == "arrow":
        return table
    if format == "pandas":
        return table.to_pandas()
    if format == "records":
        return table.to_pylist()
    if format == "ray":
        import ray.data

        return ray.data.from_arrow(table)
    if format == "datasets":
        try:
            import datasets
        except ImportError:
            raise ImportError("format='datasets' needs Hugging Face datasets: pip install datasets") from None
        return datasets.Dataset(table)
    raise ValueError(f"format: one of pandas, arrow, ray, datasets, records, not {format!r}")


# ---------------------------------------------------------------------------------------------------- apply
def apply(step: str | dict[str, Any], data: Any, **params: Any) -> Any:
    """Run one batch step (``"gopher"``, or ``{"name": "filter", "rules": [...]}``, parameters also as keywords)
    over ``data`` in this process, without Ray, through the code a pipeline runs it with (`StepRunner`: the
    same batching contract, row-by-row retry, tombstones). ``data``: a pandas DataFrame, an Arrow table or a list
    of dicts with at least ``text`` (``id``, ``metadata`` (a dict or JSON), and earlier steps' attribute columns
    when the step needs them). Returns the same kind, with the step's columns added and ``fate``/``reason``/
    ``detail`` saying which rows it would drop (their text kept, so you can read them); given an earlier
    `apply`'s result, rows it dropped stay dropped, so steps chain as in a pipeline. Whole-dataset steps
    (dedup, shard) need the whole dataset: run them in a `Pipeline`."""
    from curate.operator import BatchOperator, registry
    from curate.runner import StepRunner

    raw = ({"name": step} if isinstance(step, str) else dict(step)) | params
    table, kind = _to_table(data)
    available = {c: table.schema.field(c).type for c in table.column_names if schema.is_attribute(c)}
    ops = registry()
    problems: list[str] = []
    spec = parse_step(raw, "step", available, {}, ops, problems, keep_rejects=True)
    if spec is None:
        raise ConfigError(problems)
    if not issubclass(spec.op, BatchOperator):
        raise ConfigError([f"step.name: {spec.name!r} works on the whole dataset; apply runs one batch step (run "
                           "it in a Pipeline)"])
    runner = StepRunner(spec, None)
    try:
        out = runner(schema.conform(table))
    finally:
        runner.op.teardown()
    # the caller's columns (text as the step left it), then the step's, then its decision
    new = [c for c in out.column_names if c not in table.column_names and c not in schema.BOOKKEEPING
           and c not in schema.BASE_SCHEMA.names]
    cols = [c for c in table.column_names if c in out.column_names and c not in schema.BOOKKEEPING] + new + [
        schema.FATE, schema.REASON, schema.DETAIL]
    out = out.select(cols).rename_columns([{schema.FATE: "fate", schema.REASON: "reason",
                                            schema.DETAIL: "detail"}.get(c, c) for c in cols])
    if kind == "pandas":
        return out.to_pandas()
    if kind == "records":
        return out.to_pylist()
    return out


def _to_table(data: Any) -> tuple[pa.Table, str]:
    """The caller's rows as an Arrow table in curate's document shape (ids made up where there are none,
    metadata as JSON text), and which kind to give back."""
    if isinstance(data, pa.Table):
        table, kind = data, "arrow"
    elif isinstance(data, list):
        table, kind = pa.Table.from_pylist(data), "records"
    else:
        try:
            import pandas as pd
        except ImportError:
            pd = None
        if pd is None or not isinstance(data, pd.DataFrame):
            raise TypeError("apply(data): a pandas DataFrame, a pyarrow Table or a list of dicts")
        table, kind = pa.Table.from_pandas(data, preserve_index=False), "pandas"
    if "text" not in table.column_names:
        raise ValueError("apply(data): needs a `text` column")
    if "id" not in table.column_names:
        table = table.add_column(0, "id", pa.array([f"row-{i}" for i in range(table.num_rows)], pa.string()))
    # an earlier `apply`'s decision: rows it dropped stay dropped (not processed again), as in a pipeline
    names = {"fate": schema.FATE, "reason": schema.REASON, "detail": schema.DETAIL}
    table = table.rename_columns([names.get(c, c) for c in table.column_names])
    for c in names.values():
        if c in table.column_names:
            table = table.set_column(table.column_names.index(c), c, table.column(c).cast(pa.string()))
    if "metadata" in table.column_names and not pa.types.is_string(table.schema.field("metadata").type):
        meta = [m if isinstance(m, str) or m is None else json.dumps(m) for m in table.column("metadata").to_pylist()]
        table = table.set_column(table.column_names.index("metadata"), "metadata", pa.array(meta, pa.string()))
    return table, kind
