"""Checks a submitted job makes on the cluster before any work: an hour into a crawl is no time to learn that the
output bucket is read-only or a model is missing on the workers.

1. every input pattern matches files, and the first file of each can be read (with the job's credentials);
2. the output can be written (a probe object is written and removed);
3. every step's operator loads *on a worker*, with the resources the step asks for (``Operator.preflight``: a
   batch operator's ``setup()``/``teardown()``, which loads its model; a dataset operator's own check), so a
   missing model file or a step whose GPU no node offers shows up now. Steps with the same resources share one
   task.

Each failure is one line (`PreflightError`); the job then exits with code 2 and that line is its error.
"""

from __future__ import annotations

import uuid
from typing import Any

from curate.config import PipelineConfig


class PreflightError(RuntimeError):
    """What the cluster cannot do for this config: one line."""


def check_inputs(cfg: PipelineConfig) -> int:
    from curate import storage
    from curate.readers import expand_paths

    n = 0
    for pattern in cfg.input.paths:
        try:
            files = expand_paths([pattern])
        except (FileNotFoundError, OSError) as e:
            raise PreflightError(f"input {pattern}: {e}") from None
        try:
            with storage.open(files[0][0], "rb") as f:
                f.read(1)
        except OSError as e:
            raise PreflightError(f"input {files[0][0]} cannot be read: {e}") from None
        n += len(files)
    return n


def check_output(out: str) -> None:
    from curate import storage
    from curate.writer import atomic_write

    probe = f"{out}/_preflight-{uuid.uuid4().hex}"
    try:
        atomic_write(probe, b"curate preflight\n")
        fs, path = storage.url_to_fs(probe)
        fs.rm(path)
    except OSError as e:
        raise PreflightError(f"output {out} is not writable: {e}") from None


def _load_steps(cfg: PipelineConfig, labels: list[str]) -> list[str]:
    """In a Ray task: construct and preflight each step; the labels that loaded."""
    for step in cfg.steps:
        if step.label in labels:
            step.op(step.params, step.label).preflight()
    return labels


def check_operators(cfg: PipelineConfig, timeout_s: float) -> None:
    import ray

    from curate import storage

    groups: dict[tuple[float, float], list[str]] = {}
    for step in cfg.steps:
        res = step.resources
        groups.setdefault((res.num_cpus, res.num_gpus), []).append(step.label)
    env_vars = storage.env()
    env = {"env_vars": env_vars} if env_vars else None
    # resources in ray.remote, not .options(): then a GPU group's worker exits after its task (Ray's max_calls=1
    # for GPU functions), so the model the check loaded (vLLM reserves most of the GPU's memory) is not still
    # held when the step's own actors start on that GPU
    refs = {ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_load_steps).options(runtime_env=env)
            .remote(cfg, labels): (cpus, gpus, labels) for (cpus, gpus), labels in groups.items()}
    done, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    for ref in done:
        try:
            ray.get(ref)
        except Exception as e:  # noqa: BLE001 - the step's own error, as one line
            cause = getattr(e, "cause", None) or e
            text = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
            raise PreflightError(f"steps {', '.join(refs[ref][2])} cannot load on the cluster: "
                                 f"{type(cause).__name__}: {text}") from None
    for ref in pending:
        cpus, gpus, labels = refs[ref]
        ray.cancel(ref, force=True)
        raise PreflightError(f"steps {', '.join(labels)} found no node with num_cpus={cpus:g}, num_gpus={gpus:g} "
                             f"within {timeout_s:g} s (add a worker group that has them, or lower resources)")


def run(cfg: PipelineConfig, out: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """All checks, in order; returns what was checked (for the job log)."""
    files = check_inputs(cfg)
    check_output(out)
    check_operators(cfg, timeout_s)
    return {"input_files": files, "output": out, "steps": [s.label for s in cfg.steps]}
