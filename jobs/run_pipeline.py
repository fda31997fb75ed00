"""Entry point of a submitted pipeline, run by Ray Jobs on the head node: attaches to that cluster and runs.

    ray job submit --working-dir . -- python -m jobs.run_pipeline pipeline.yaml -o s3://bucket/out

It is `curate run --address auto` with the config shipped in the job's working directory; kept as its own
module so the job's command line stays stable when the CLI grows.
"""

from __future__ import annotations

import sys

from curate.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--address" not in args:
        args += ["--address", "auto"]
    sys.exit(main(["run", *args]))
