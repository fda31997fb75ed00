"""`curate submit / jobs / status / logs / stop`: a pipeline as a Ray Job, through the Ray Jobs SDK.

The job ships the working directory (the config, local inputs; .gitignore'd files, virtualenvs, outputs and caches
left out) as ``working_dir`` and the code a run needs (``curate``, ``jobs`` and the top-level package of every
operator the config names) as ``py_modules``, so the cluster runs exactly the laptop's code; third-party packages
come from the cluster's image (infra/Dockerfile installs the same set `make` does). Its entrypoint is
``python -m jobs.run_pipeline``, which checks the cluster before any work (`curate.preflight`) and then runs.

Authentication is Ray's own: with ``RAY_AUTH_MODE=token`` the SDK sends the token from ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` (what ``ray get-auth-token`` prints on the head node).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# exit codes scripts can rely on (docs/how-to/cluster.md, "Exit codes")
# (2, a user error found on the laptop, is the CLI's code for ConfigError)
EXIT_OK, EXIT_FAILED, EXIT_STOPPED, EXIT_UNREACHABLE, EXIT_RUNNING = 0, 4, 5, 6, 7
STATUS_EXIT = {"SUCCEEDED": EXIT_OK, "FAILED": EXIT_FAILED, "STOPPED": EXIT_STOPPED}
TERMINAL = set(STATUS_EXIT)
ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"  # what `ray job` reads too
# never shipped: environments, outputs, caches, VCS data (on top of what .gitignore files exclude)
EXCLUDES = [".venv", "venv", ".git", "out", "build", "dist", "**/__pycache__", "*.egg-info", ".cache",
            "bench/.cache", "bench/results", ".pytest_cache", "node_modules"]
CONNECT_TIMEOUT_S = 5.0


class ClusterError(RuntimeError):
    """The cluster cannot be reached, refuses the token, or does not know the job: one line for the user."""

    exit_code = EXIT_UNREACHABLE


def resolve_address(address: str | None) -> str:
    addr = address or os.environ.get(ADDRESS_ENV)
    if not addr:
        raise ClusterError(f"no cluster address: pass --address http://HEAD:8265 or set {ADDRESS_ENV}")
    return addr if "://" in addr else f"http://{addr}"


def insecure_warning(address: str) -> str | None:
    """A warning when the Jobs API is reached in the clear over a network: the token and the code travel in it."""
    u = urlparse(address)
    if u.scheme == "https":
        return None
    host = u.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"warning: {address} is neither loopback nor HTTPS: the auth token and your code cross the network in "
            "the clear; reach the head through `kubectl port-forward`/an SSH tunnel to 127.0.0.1, or an HTTPS proxy")


# the Jobs SDK's loggers carry their own INFO level (one line per uploaded package, one when a log stream closes)
SDK_LOGGERS = ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk")


def quiet_sdk() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def client(address: str | None):
    """A JobSubmissionClient for ``address``, or a one-line ClusterError within CONNECT_TIMEOUT_S when nothing
    answers there or the token is refused (the SDK itself waits on a silent host for as long as TCP does)."""
    from ray.job_submission import JobSubmissionClient

    addr = resolve_address(address)
    u = urlparse(addr)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray Jobs API at {addr}: {e.strerror or e} (is the head up, and the "
                           "dashboard port forwarded?)") from None
    try:
        return JobSubmissionClient(addr)
    except Exception as e:  # noqa: BLE001 - the SDK raises bare RuntimeError/ConnectionError/AuthenticationError
        raise ClusterError(_sdk_error(addr, e)) from None


def _sdk_error(addr: str, e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if type(e).__name__ == "AuthenticationError" or "Authentication" in text:
        how = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's token "
               "(`ray get-auth-token` on the head node)")
        return f"{addr}: {text.rstrip('.:')} — {how}"
    return f"{addr}: {text}"


def _call(addr: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        msg = str(e)
        if "does not exist" in msg or "404" in msg:
            raise ClusterError(f"{addr}: no job {args[0] if args else ''} there") from None
        raise ClusterError(_sdk_error(addr, e)) from None


def runtime_env(cfg: Any, working_dir: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The job's runtime env: working_dir and py_modules as the module docstring says, the storage options of the
    config (`curate.storage`, never credentials), then the user's ``--runtime-env`` file on top (env_vars merged)."""
    import jobs
    from curate import storage
    from curate.runner import code_packages

    modules = code_packages(cfg)
    modules.append(os.path.dirname(jobs.__file__))
    env: dict[str, Any] = {"working_dir": working_dir, "py_modules": sorted(set(modules)),
                           "excludes": list(EXCLUDES)}
    env_vars = dict(storage.env())
    for key, value in (extra or {}).items():
        if key == "env_vars":
            env_vars.update({str(k): str(v) for k, v in value.items()})
        elif key == "excludes":
            env["excludes"] += list(value)
        else:
            env[key] = value
    if env_vars:
        env["env_vars"] = env_vars
    return env


def entrypoint(config_rel: str, output: str, args: Any) -> str:
    import shlex

    # not -q: the job's log (what `submit --wait` and `logs --follow` show) gets curate's progress lines
    parts = ["python", "-m", "jobs.run_pipeline", config_rel, "-o", output]
    if args.overwrite:
        parts.append("--overwrite")
    if args.resume:
        parts.append("--resume")
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    return shlex.join(parts)


def dashboard_link(addr: str, job_id: str) -> str:
    return f"{addr.rstrip('/')}/#/jobs/{job_id}"


def submit(args: Any) -> int:
    """Validate on the laptop, submit, print the job id, the Ray dashboard link and the output URL; with --wait,
    follow the logs and exit with the job's status code."""
    import yaml

    from curate.config import ConfigError, load_config
    from curate.runner import configure_storage

    cfg = load_config(args.config)  # a config error never reaches the cluster
    output = (args.output or cfg.output.path).rstrip("/")
    if "://" not in output:
        print(f"warning: output {output} is a local path: on a cluster each node would write its own disk; use an "
              "object-store URL (s3://, gs://) unless all nodes share this path", file=sys.stderr)
    working_dir = Path(args.working_dir).resolve()
    config_path = Path(args.config).resolve()
    if not config_path.is_relative_to(working_dir):
        raise ConfigError([f"{args.config}: not inside the working directory {working_dir} that is shipped to "
                           "the cluster (run from the folder that holds it, or pass --working-dir)"])
    extra = None
    if args.runtime_env:
        try:
            extra = yaml.safe_load(Path(args.runtime_env).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError([f"--runtime-env {args.runtime_env}: {e}"]) from None
        if not isinstance(extra, dict):
            raise ConfigError([f"--runtime-env {args.runtime_env}: expected a mapping (pip, env_vars, ...)"])
    configure_storage(cfg, output)
    addr = resolve_address(args.address)
    warning = insecure_warning(addr)
    if warning:
        print(warning, file=sys.stderr)
    c = client(addr)
    if not args.verbose:  # the SDK logs every package it uploads at INFO (set after `import ray`, which resets it)
        quiet_sdk()
    env = runtime_env(cfg, str(working_dir), extra)
    job_id = _submit_when_ready(addr, c, entrypoint=entrypoint(str(config_path.relative_to(working_dir)), output,
                                                               args),
                                runtime_env=env, submission_id=args.job_id,
                                metadata={"curate_config": str(config_path.relative_to(working_dir)),
                                          "curate_output": output},
                                entrypoint_num_cpus=args.entrypoint_num_cpus)
    print(f"job:       {job_id}")
    print(f"dashboard: {dashboard_link(addr, job_id)}")
    print(f"output:    {output}")
    print(f"follow:    curate logs {job_id} --follow --address {addr}")
    if not args.wait:
        return EXIT_OK
    return _follow(c, addr, job_id, args.quiet)


# a head that has just started answers the Jobs API before its job agent is up, and refuses submissions with an
# HTTP 500 saying so; the submission is refused before anything runs, so sending it again is safe
NO_AGENT = "No available agent to submit job"
AGENT_WAIT_S = 120.0


def _submit_when_ready(addr: str, c: Any, wait_s: float | None = None, **kwargs: Any) -> str:
    """``c.submit_job(**kwargs)``, waiting (bounded, with one message) while the head has no job agent yet."""
    wait_s = AGENT_WAIT_S if wait_s is None else wait_s
    deadline, told = time.monotonic() + wait_s, False
    while True:
        try:
            return c.submit_job(**kwargs)
        except Exception as e:  # noqa: BLE001
            if NO_AGENT not in str(e):
                raise ClusterError(_sdk_error(addr, e)) from None
            if time.monotonic() >= deadline:
                raise ClusterError(f"{addr}: the cluster's job agent did not come up within {wait_s:g} s (is the "
                                   "head node healthy? see its dashboard_agent.log)") from None
            if not told:
                print(f"waiting for the cluster's job agent (the head has just started; up to {wait_s:g} s)",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(1.0)


def _follow(c: Any, addr: str, job_id: str, quiet: bool = False) -> int:
    import asyncio

    quiet_sdk()
    async def tail() -> None:
        async for chunk in c.tail_job_logs(job_id):
            if not quiet:
                print(chunk, end="", flush=True)

    try:
        asyncio.run(tail())
    except Exception:  # noqa: BLE001 - the log stream closes with the job; its status says how it ended
        pass
    _wait_terminal(c, addr, job_id)
    return _report(c, addr, job_id)


def _wait_terminal(c: Any, addr: str, job_id: str, poll_s: float = 1.0) -> str:
    while True:
        status = str(_call(addr, c.get_job_status, job_id).value)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def error_line(logs: str) -> str | None:
    """curate's own one-line error in a job's logs (the last ``error: ...`` line), if it wrote one."""
    lines = [ln.strip() for ln in logs.splitlines() if ln.strip().startswith("error: ")]
    return lines[-1] if lines else None


def _report(c: Any, addr: str, job_id: str) -> int:
    info = _call(addr, c.get_job_info, job_id)
    status = str(info.status.value)
    meta = info.metadata or {}
    print(f"{job_id}: {status}" + (f" — output {meta['curate_output']}" if meta.get("curate_output") else ""))
    if status == "FAILED":
        line = error_line(_call(addr, c.get_job_logs, job_id))
        print(line or f"error: {(info.message or 'the job failed').splitlines()[0]}")
    elif status not in TERMINAL and info.message:
        print(info.message.splitlines()[0])
    return STATUS_EXIT.get(status, EXIT_RUNNING)


def status(args: Any) -> int:
    addr = resolve_address(args.address)
    c = client(addr)
    return _report(c, addr, args.job)


def logs(args: Any) -> int:
    addr = resolve_address(args.address)
    c = client(addr)
    if args.follow:
        return _follow(c, addr, args.job)
    print(_call(addr, c.get_job_logs, args.job), end="")
    return EXIT_OK


def stop(args: Any) -> int:
    """Ask Ray to stop the job (SIGTERM to the driver, then SIGKILL) and wait until it has stopped."""
    addr = resolve_address(args.address)
    c = client(addr)
    _call(addr, c.stop_job, args.job)
    status = _wait_terminal(c, addr, args.job)
    print(f"{args.job}: {status}")
    return STATUS_EXIT.get(status, EXIT_RUNNING)


def list_jobs(args: Any) -> int:
    addr = resolve_address(args.address)
    c = client(addr)
    rows = sorted(_call(addr, c.list_jobs), key=lambda j: j.start_time or 0)
    print(f"{'job':<32} {'status':<10} {'started (UTC)':<20} output")
    for j in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(j.start_time / 1000)) if j.start_time else "-"
        out = (j.metadata or {}).get("curate_output", "-")
        print(f"{j.submission_id or j.job_id:<32} {str(j.status.value):<10} {started:<20} {out}")
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """The cluster sub-commands on the `curate` parser."""
    def address(p: Any) -> None:
        p.add_argument("--address", help=f"Ray Jobs API, http(s)://HEAD:8265 (default: ${ADDRESS_ENV})")

    p = sub.add_parser("submit", help="run a pipeline on a Ray cluster as a Ray Job")
    p.add_argument("config")
    address(p)
    p.add_argument("-o", "--output", help="output URL (s3://bucket/run, gs://...; overrides output.path)")
    p.add_argument("--runtime-env", help="YAML with extra runtime_env fields (env_vars, pip, excludes, ...)")
    p.add_argument("--working-dir", default=".", help="folder shipped as the job's working_dir (default: .)")
    p.add_argument("--job-id", help="submission id (default: Ray picks one)")
    p.add_argument("--entrypoint-num-cpus", type=float, default=None,
                   help="CPUs reserved for the driver (default 0: it mostly waits)")
    p.add_argument("--limit", type=int)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--wait", action="store_true", help="follow the logs; exit with the job's status code")
    p.add_argument("-q", "--quiet", action="store_true", help="with --wait: no logs, only the outcome")
    p.add_argument("-v", "--verbose", action="store_true", help="show the SDK's upload log lines")
    p.set_defaults(fn=submit)
    p = sub.add_parser("jobs", help="list the cluster's jobs")
    address(p)
    p.set_defaults(fn=list_jobs)
    status_help = "a job's status (exit code: 0 succeeded, 4 failed, 5 stopped, 6 unreachable, 7 still running)"
    for name, fn, text in (("status", status, status_help),
                           ("logs", logs, "a job's logs"), ("stop", stop, "stop a job and wait until it stopped")):
        p = sub.add_parser(name, help=text)
        p.add_argument("job")
        address(p)
        if name == "logs":
            p.add_argument("-f", "--follow", action="store_true")
        p.set_defaults(fn=fn)
