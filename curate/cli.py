"""`curate` command line: run, validate, inspect, operators, and the sub-commands stages add (entry points)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_validate(args: argparse.Namespace) -> int:
    from curate.api import Pipeline

    pipe = Pipeline(args.config)
    print(f"{args.config}: ok — {len(pipe.steps)} steps: " + " -> ".join(pipe.steps))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from curate.api import Pipeline
    from curate.config import ConfigError
    from curate.stats import format_table, parallelism_warnings

    pipe = Pipeline(args.config)  # fails before any output exists
    cfg = pipe.config
    out = args.output or cfg.output.path
    if args.resume and args.overwrite:
        raise ConfigError(["--resume and --overwrite exclude each other"])
    if args.verbose:  # Ray's own output on the terminal, as Ray prints it (debugging)
        console = None
    else:
        from curate.console import RunConsole

        console = RunConsole.pick(args.quiet, args.progress_every)
    stats = pipe.run(out, address=args.address, limit=args.limit, overwrite=args.overwrite,
                     progress=not args.quiet, resume=args.resume, console=console).stats
    print()
    print(format_table(stats))
    for line in parallelism_warnings(stats):
        print(line, file=sys.stderr)
    root = out.rstrip("/")  # as the user wrote it: short, and what they typed
    sharder = next((x for x in cfg.steps if x.op.writes_documents), None)
    shard = next((s.get("info") for s in stats["steps"] if sharder and s["step"] == sharder.label), None)
    made = "documents/ (Dolma), attributes/ (scores)"
    if shard:
        tokens = " + tokens/" if getattr(sharder.params, "write_tokens", False) else ""
        made += (f", manifest.json{tokens}: {shard['shards']} token-balanced shards, {shard['text_tokens']:,} text "
                 f"tokens ({shard['tokenizer']['spec']})")
    print(f"\noutput:    {root}/  {made}")
    ray_log = console.summary_line(str(root)) if console is not None else None
    print("stats:     stats.json (live during the run), stats/docs/*.parquet (per document)"
          + (f"; {ray_log}" if ray_log else ""))
    print(f"dashboard: curate dashboard {out}   (or: curate report {out} -o report.html)")
    code = 0 if stats["totals"]["balanced"] else 3
    _exit_now_if_local_ray(code)
    return code


def _exit_now_if_local_ray(code: int) -> None:
    """Everything is written: end the local Ray this command started without its graceful shutdown, and exit."""
    import os

    from curate.runner import end_local_ray

    import ray

    if not ray.is_initialized():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    # the driver's Ray threads report the processes' deaths ("Raylet is terminated..."): nothing more is ours
    # to say, so nothing more reaches the terminal
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    if end_local_ray():
        os._exit(code)
    for fd, target in zip(saved, (1, 2)):  # attached to a cluster: a normal exit
        os.dup2(fd, target)
        os.close(fd)
    os.close(devnull)


def _cmd_preflight(args: argparse.Namespace) -> int:
    from curate import preflight
    from curate.config import load_config
    from curate.runner import configure_storage, init_ray

    cfg = load_config(args.config)
    out = (args.output or cfg.output.path).rstrip("/")
    configure_storage(cfg, out)
    init_ray(cfg, args.address, quiet=args.quiet)
    try:
        done = preflight.run(cfg, out, args.timeout)
    except preflight.PreflightError as e:
        print(f"error: preflight: {e}", file=sys.stderr, flush=True)
        return 2
    print(f"preflight: ok — {done['input_files']} input files readable, {out} writable, "
          f"{len(done['steps'])} steps load on the cluster", flush=True)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from curate import storage
    from curate.stats import format_table
    from curate.writer import read_jsonl

    root = args.output.rstrip("/")
    fs, path = storage.url_to_fs(f"{root}/stats.json")
    if not fs.exists(path):
        print(f"{root}/stats.json: not found (is {root} a curate output?)", file=sys.stderr)
        return 2
    stats = json.loads(fs.cat_file(path))
    print(f"status: {stats['status']}, elapsed {stats['elapsed_s']} s, updated {stats['updated']}")
    print(format_table(stats))
    fs, docs_root = storage.url_to_fs(f"{root}/documents")
    proto = f"{root.split('://')[0]}://" if "://" in root else ""
    docs = sorted(p for p in fs.find(docs_root) if ".jsonl." in p) if fs.exists(docs_root) else []
    shown = 0
    for path in docs:
        for d in read_jsonl(proto + path):
            if shown >= args.samples:
                break
            snippet = " ".join(d["text"].split())[:240]
            print(f"\n--- {d['id']}  ({d['metadata'].get('url', d['metadata'].get('input_file', ''))})\n{snippet}")
            shown += 1
        if shown >= args.samples:
            break
    return 0


def _two_at_most(args: argparse.Namespace) -> None:
    from curate.config import ConfigError

    if len(args.outputs) > 2:
        raise ConfigError([f"give one output, or two to compare (got {len(args.outputs)})"])


def _cmd_dashboard(args: argparse.Namespace) -> int:
    _two_at_most(args)
    from curate.dashboard.index import default_cache_dir
    from curate.dashboard.server import serve

    def ready(url: str) -> None:
        shown = " and ".join(args.outputs)
        print(f"dashboard: {url}  ({shown}; read-only; Ctrl-C stops it)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {args.host}: anyone who can reach this port can read the run's stats and "
                  f"documents", file=sys.stderr, flush=True)

    serve(args.outputs, args.host, args.port, Path(args.cache_dir) if args.cache_dir else default_cache_dir(), ready)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    _two_at_most(args)
    from curate.dashboard.index import default_cache_dir
    from curate.dashboard.report import write

    size = write(args.outputs, args.output, Path(args.cache_dir) if args.cache_dir else default_cache_dir())
    print(f"report: {args.output} ({size / 1e6:.1f} MB, self-contained: opens offline)")
    return 0


def _cmd_operators(args: argparse.Namespace) -> int:
    from curate.config import describe_operators

    print(json.dumps(describe_operators(), indent=1, default=str))
    return 0


COMMANDS_GROUP = "curate.commands"


def _add_stage_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands stages declare in the ``curate.commands`` entry-point group (the framework names none).

    An entry point ``NAME = "pkg.mod:fn"`` adds ``curate NAME``; ``train.WHAT`` adds ``curate train WHAT``. ``fn``
    receives its argparse parser, adds arguments and sets ``fn`` (``args -> exit code``); its docstring's first
    line is the help. Entry points load only when the command line is built, so a stage's imports stay lazy.
    """
    from importlib.metadata import entry_points

    groups: dict[str, argparse._SubParsersAction] = {}
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        parent, _, name = ep.name.rpartition(".")
        where = sub
        if parent:
            if parent not in groups:
                groups[parent] = sub.add_parser(parent, help=f"{parent} sub-commands from stages").add_subparsers(
                    dest=f"{parent}_what", required=True)
            where = groups[parent]
        fn = ep.load()
        fn(where.add_parser(name, help=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else None))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, stage sub-commands included (also what the CLI reference page is generated from)."""
    from curate import cluster

    parser = argparse.ArgumentParser(prog="curate", description="Data curation for LLM pretraining on Ray.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run a pipeline")
    p.add_argument("config")
    p.add_argument("-o", "--output", help="output root (overrides output.path)")
    p.add_argument("--address", help="Ray cluster (GCS) address HOST:6379, or auto, run on a cluster node; "
                                      "default: a local Ray. From a laptop use `curate submit`")
    p.add_argument("--limit", type=int, help="process only the first N documents (in file order)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the killed run that wrote OUT (same config and inputs): finished parts and "
                        "checkpointed stages are not redone")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress: only the summary and errors")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Ray's own log lines on the terminal instead of curate's progress (debugging)")
    p.add_argument("--progress-every", type=float, default=30.0, metavar="S",
                   help="when stdout is not a terminal (a job log, a pipe): one progress line every S seconds")
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("preflight", help="check inputs, output and every step's models on the cluster")
    p.add_argument("config")
    p.add_argument("-o", "--output")
    p.add_argument("--address", help="Ray cluster address (auto inside a job); default: a local Ray")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for nodes with a step's resources")
    p.add_argument("-q", "--quiet", action="store_true", help="only the outcome and errors")
    p.set_defaults(fn=_cmd_preflight)
    cluster.add_commands(sub)
    p = sub.add_parser("validate", help="check a pipeline config without running it")
    p.add_argument("config")
    p.set_defaults(fn=_cmd_validate)
    p = sub.add_parser("inspect", help="print a run's stats and sample documents")
    p.add_argument("output")
    p.add_argument("-n", "--samples", type=int, default=3)
    p.set_defaults(fn=_cmd_inspect)
    p = sub.add_parser("dashboard", help="serve a live, read-only web dashboard over a run's output (or two, compared)")
    p.add_argument("outputs", nargs="+", metavar="OUT", help="output root (local path or s3://, gs:// URL); a second "
                                                              "one adds the compare view")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--cache-dir", help="where the local stats index lives (default ~/.cache/curate/dashboard, "
                                       "or $CURATE_CACHE/dashboard)")
    p.set_defaults(fn=_cmd_dashboard)
    p = sub.add_parser("report", help="write the dashboard's views as one self-contained HTML file")
    p.add_argument("outputs", nargs="+", metavar="OUT")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write")
    p.add_argument("--cache-dir")
    p.set_defaults(fn=_cmd_report)
    p = sub.add_parser("operators", help="list operators and their parameters (JSON)")
    p.set_defaults(fn=_cmd_operators)
    _add_stage_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from curate import cluster

    args = build_parser().parse_args(argv)
    from curate.checkpoint import ResumeError
    from curate.config import ConfigError
    from curate.operator import PluginError

    try:
        return args.fn(args)
    except cluster.ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ConfigError, ResumeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output or input path the user cannot write or read: their error, one line
        hint = f" ({e.hint})" if getattr(e, "hint", None) else ""
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": ") + hint, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
