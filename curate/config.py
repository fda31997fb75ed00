"""pipeline.yaml: load, validate against each operator's own parameters, and report errors by key path.

Everything is checked before any work starts (and before an output directory exists): unknown top-level keys,
unknown operators, unknown or mistyped step parameters, and filter expressions naming attribute columns that no
earlier step makes. Nothing in the config is imported by string: step names resolve through the registry only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curate.operator import Operator, Params, Resources, registry
from curate.schema import canonical_time


class ConfigError(ValueError):
    """A config problem, with every message prefixed by its key path (``steps[2].timeout_s: ...``)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid pipeline config:\n  " + "\n  ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def no_secrets(options: dict[str, Any]) -> dict[str, Any]:
    """Refuse credentials in storage_options: the config is recorded (stats.json, OUT/_run.json) and shipped."""
    from curate.storage import secret_keys

    found = secret_keys(options)
    if found:
        raise ValueError(f"storage_options may not hold credentials ({', '.join(found)}): set them in the standard "
                         "env vars (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS) or a "
                         "profile on the machines that run the job")
    return options


class InputSpec(_Strict):
    paths: list[str] = Field(description="Files, directories or globs; local paths or fsspec URLs (s3://, gs://).")
    format: Literal["auto", "warc", "jsonl", "parquet"] = Field(
        "auto", description="auto: by extension (.warc/.arc/.wet[.gz], .jsonl/.json[.gz|.zst], .parquet)."
    )
    source: str = Field("web", description="Dolma `source` of the documents (the output subdirectory too).")
    max_record_bytes: int = Field(
        10_000_000, gt=0, description="Payloads larger than this are dropped as `too_large` without being read."
    )
    warc_record_types: list[Literal["response", "resource", "conversion"]] = Field(
        ["response", "resource", "conversion"], min_length=1, description="WARC record types read as documents; "
        "other records are counted under records_skipped (FineWeb reads response and conversion records).")
    http_status: Literal["2xx", "any"] = Field(
        "2xx", description="2xx: a response with another HTTP status (a redirect, a 404 page) is dropped as "
        "`http_status`; any: every response is a document (FineWeb extracts them all).")
    storage_options: dict[str, Any] = Field(
        {}, description="fsspec options of the input store (s3: endpoint_url, client_kwargs.region_name, anon, "
        "profile, requester_pays; gs: project, token: 'anon'). No secrets: credentials come from the standard env "
        "vars, profiles or the node's identity (docs/how-to/object-storage.md).")
    docs_per_block: int = Field(
        1000, gt=0, description="Records per block the reader yields, and per output part: part k of an input file "
        "holds what its records [k*n, (k+1)*n) became (documents, attributes, stats), however Ray merged or cut the "
        "blocks on the way; the unit a resume skips."
    )

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        return no_secrets(v)


class OutputSpec(_Strict):
    path: str = Field("out", description="Output root (local or fsspec URL); `curate run -o` overrides it.")
    storage_options: dict[str, Any] = Field(
        {}, description="fsspec options of the output store, as input.storage_options (no secrets).")
    compression: Literal["gzip", "zstd"] = Field(
        "gzip", description="Compression of document/attribute files. gzip (.jsonl.gz) is what every dolma command, "
        "datasets, duckdb and polars read with no extra package; zstd is smaller and faster to write, but dolma's "
        "Python commands need `smart_open[zst]` for it.")
    added: str | None = Field(
        None, description="Dolma `added` (ISO-8601) on every document; default: the run's start time (UTC). "
        "Set it for byte-identical reruns.")
    write_doc_stats: bool = Field(True, description="Write the per-document stats parquet (OUT/stats/docs/).")
    rejects: bool = Field(
        False, description="Keep the text of every dropped document, one JSON line each with its step, reason and "
        "detail, under OUT/rejects/<step>/ (as datatrove's exclusion writers do): to read what a rule drops. Off: "
        "only steps that always keep theirs (rephrase) write rejects.")
    checkpoints: bool = Field(
        True, description="Checkpoint whole-dataset steps (their input and internal stages under OUT/_work) so "
        "`--resume` after a kill does not redo them. Part markers are always written.")

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        return no_secrets(v)

    @field_validator("added")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        """Written as every document's `added` in one format: YYYY-MM-DDTHH:MM:SSZ (UTC)."""
        if v is not None and canonical_time(v) is None:
            raise ValueError(f"{v!r} is not an ISO-8601 timestamp (e.g. 2026-01-31T00:00:00Z)")
        return canonical_time(v) if v is not None else None


class RaySpec(_Strict):
    address: str | None = Field(None, description="Ray cluster address (auto, or HOST:6379 on a cluster node; "
                                 "from a laptop use `curate submit`); default: a local Ray.")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for a local Ray; default: all cores.")
    include_dashboard: bool = Field(False, description="Start Ray's own dashboard for a local run.")
    target_max_block_bytes: int | None = Field(
        None, gt=0, description="Ray Data block size target (default 128 MiB). Ray merges the reader's blocks of one "
        "file up to it, so it sets the size of output parts and the memory a task holds.")
    op_resource_reservation: bool | None = Field(
        None, description="Ray Data's per-operator resource reservation. Default, on a local Ray: on while the input "
        "streams (reading and the batch steps fused into it), off from a whole-dataset step's materialised input on "
        "(there it ran one task at a time on 2 CPUs); on a cluster Ray's default (on). true/false: that everywhere.")


class StepSpec(BaseModel):
    """One validated step: its operator class, parameters, and scheduling resources."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str  # the operator name (== pipeline.yaml `name`)
    label: str  # unique within the pipeline: name, or name#2 for a second use
    op: type[Operator]
    params: Params
    resources: Resources
    keep_rejects: bool = False  # output.rejects: rows this step drops keep their text for OUT/rejects/


class PipelineConfig(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    input: InputSpec
    output: OutputSpec
    ray: RaySpec
    steps: list[StepSpec]
    path: str | None = None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(err: ValidationError, prefix: str) -> list[str]:
    msgs = []
    for e in err.errors():
        path = _loc(e["loc"])
        full = f"{prefix}.{path}" if prefix and path else (prefix or path)
        msgs.append(f"{full}: {e['msg']}")
    return msgs


def load_config(path: str | Path) -> PipelineConfig:
    p = Path(path)
    if not p.exists():
        raise ConfigError([f"{p}: no such file"])
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError([f"{p}: not valid YAML: {e}"]) from None
    return parse_config(raw, str(p))


def parse_step(step: Any, where: str, available: dict[str, pa.DataType], seen: dict[str, int],
               ops: dict[str, type[Operator]], problems: list[str], keep_rejects: bool = False) -> StepSpec | None:
    """One step of a pipeline (``{name: <operator>, ...params, resources}``) validated against the columns earlier
    steps make (``available``, updated with this step's); a problem goes to ``problems`` as one line starting
    with ``where``. Used for pipeline.yaml and for `curate.apply`, so both say the same thing about a mistake."""
    if not isinstance(step, dict) or "name" not in step:
        problems.append(f"{where}: expected a mapping with a `name`")
        return None
    name = step["name"]
    if name not in ops:
        problems.append(f"{where}.name: unknown operator {name!r} (known: {', '.join(sorted(ops))})")
        return None
    op = ops[name]
    body = {k: v for k, v in step.items() if k not in ("name", "resources")}
    try:
        params = op.Params.model_validate(body)
    except ValidationError as e:
        problems.extend(_problems(e, where))
        return None
    try:
        resources = Resources.model_validate(step.get("resources") or {})
    except ValidationError as e:
        problems.extend(_problems(e, f"{where}.resources"))
        return None
    try:
        op.check(params, dict(available))
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return None
    seen[name] = seen.get(name, 0) + 1
    label = name if seen[name] == 1 else f"{name}#{seen[name]}"
    available.update(op.output_columns(params))
    return StepSpec(name=name, label=label, op=op, params=params, resources=resources, keep_rejects=keep_rejects)


def parse_config(raw: Any, path: str | None = None) -> PipelineConfig:
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping with input, output, steps"])
    problems: list[str] = []
    known = {"input", "output", "ray", "steps"}
    for key in raw:
        if key not in known:
            problems.append(f"{key}: unknown key (expected one of {sorted(known)})")

    def section(key: str, model: type[BaseModel], required: bool) -> Any:
        if key not in raw:
            if required:
                problems.append(f"{key}: missing")
                return None
            return model()
        try:
            return model.model_validate(raw[key] if raw[key] is not None else {})
        except ValidationError as e:
            problems.extend(_problems(e, key))
            return None

    input_spec = section("input", InputSpec, True)
    output_spec = section("output", OutputSpec, False)
    ray_spec = section("ray", RaySpec, False)

    steps_raw = raw.get("steps")
    steps: list[StepSpec] = []
    if not isinstance(steps_raw, list) or not steps_raw:
        problems.append("steps: expected a non-empty list of {name: <operator>, ...params}")
        steps_raw = []
    ops = registry()
    seen: dict[str, int] = {}
    # Columns available to each step: what earlier steps declare they make.
    available: dict[str, pa.DataType] = {}
    keep_rejects = bool(output_spec.rejects) if output_spec is not None else False
    for i, step in enumerate(steps_raw):
        spec = parse_step(step, f"steps[{i}]", available, seen, ops, problems, keep_rejects)
        if spec is not None:
            steps.append(spec)

    for i, st in enumerate(steps[:-1]):
        if st.op.writes_documents:
            problems.append(f"steps[{i}]: `{st.name}` writes the output documents and must be the last step")
    if problems:
        raise ConfigError(problems)
    return PipelineConfig(input=input_spec, output=output_spec, ray=ray_spec, steps=steps, path=path)


def describe_operators() -> dict[str, dict[str, Any]]:
    """Every operator's parameters with types, defaults and descriptions (for `curate operators` and docs)."""
    out: dict[str, dict[str, Any]] = {}
    from curate.operator import plugins

    for name, plugin in sorted(plugins().items()):
        op = plugin.cls
        fields = {}
        for fname, f in op.Params.model_fields.items():
            fields[fname] = {
                "type": getattr(f.annotation, "__name__", str(f.annotation)),
                "default": None if f.is_required() else f.default,
                "description": f.description or "",
            }
        out[name] = {"doc": (op.__doc__ or "").strip().splitlines()[0] if op.__doc__ else "", "params": fields,
                     "outputs": {k: str(v) for k, v in op.outputs.items()}, "compute": op.default_compute,
                     "package": plugin.distribution, "version": plugin.version, "entry_point": plugin.target}
    return out
