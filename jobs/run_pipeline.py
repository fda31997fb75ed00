"""Entry point of a submitted pipeline, run by Ray Jobs on the head node (`curate submit` builds its command line):
checks the cluster (`curate.preflight`), then runs the pipeline attached to this cluster.

    python -m jobs.run_pipeline pipeline.yaml -o s3://bucket/out [-q] [--overwrite | --resume] [--limit N]

Exit codes are `curate run`'s: 0 done, 2 a user error (config, preflight, output), 3 counts not balanced.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from curate.cli import main as curate_main

    p = argparse.ArgumentParser(prog="jobs.run_pipeline")
    p.add_argument("config")
    p.add_argument("-o", "--output")
    p.add_argument("--preflight-timeout", type=float, default=600.0,
                   help="seconds a step may wait for a node with its resources during the checks")
    p.add_argument("--no-preflight", action="store_true")
    args, rest = p.parse_known_args(argv)
    run = ["run", args.config, "--address", "auto", *(["-o", args.output] if args.output else []), *rest]
    if not args.no_preflight:
        code = curate_main(["preflight", args.config, "--address", "auto", "-q", "--timeout",
                            str(args.preflight_timeout), *(["-o", args.output] if args.output else [])])
        if code:
            return code
    return curate_main(run)


if __name__ == "__main__":
    sys.exit(main())
