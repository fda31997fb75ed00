"""infra/: no Kubernetes, cloud or image registry is reachable here, so the manifests are loaded and checked against
the repository (kinds, API versions, required fields, the Ray version and image tag, the entrypoint module and
config, the resources operators ask for), and the Dockerfile's install is run as it is written: its `pip` lines,
in a fresh virtualenv, in a copy of what the Dockerfile COPYs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO

INFRA = REPO / "infra"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
RAY_VERSION = next(re.search(r"==([\d.]+)", d).group(1) for d in PYPROJECT["project"]["dependencies"]
                   if d.startswith("ray["))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def cluster_specs() -> list[tuple[str, dict]]:
    rc = load(INFRA / "kuberay" / "raycluster.yaml")
    job = load(INFRA / "kuberay" / "rayjob.yaml")
    return [("raycluster", rc["spec"]), ("rayjob", job["spec"]["rayClusterSpec"])]


def containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_kuberay_kinds_versions_and_images():
    import ray

    assert RAY_VERSION == ray.__version__
    rc, job = load(INFRA / "kuberay" / "raycluster.yaml"), load(INFRA / "kuberay" / "rayjob.yaml")
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    for name, spec in cluster_specs():
        assert spec["rayVersion"] == RAY_VERSION, name
        assert spec["authOptions"]["mode"] == "token", name  # Ray 2.60 clusters need the token
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the driver node runs no data tasks
        for c in containers(spec):
            image, tag = c["image"].rsplit(":", 1)
            assert tag in (VERSION, f"{VERSION}-gpu"), (name, c["image"])
            req, lim = c["resources"]["requests"], c["resources"]["limits"]
            assert req == lim, "requests == limits: Ray sizes itself from the limits"
        for g in spec["workerGroupSpecs"]:
            assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]
            store = g["rayStartParams"].get("object-store-memory")
            if store:
                mem = g["template"]["spec"]["containers"][0]
                gib = int(mem["resources"]["limits"]["memory"].removesuffix("Gi"))
                assert int(store) <= 0.35 * gib * 2**30, "object store within ~30% of the pod's memory"


def test_gpu_group_offers_what_rephrase_asks_for():
    from curate.config import load_config

    cfg = load_config(REPO / "jobs" / "specs" / "rephrase_gpu.yaml")
    wants = next(s.resources.num_gpus for s in cfg.steps if s.name == "rephrase")
    assert wants >= 1
    spec = dict(cluster_specs())["raycluster"]
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    per_node = float(gpu["rayStartParams"]["num-gpus"])
    assert per_node >= wants
    c = gpu["template"]["spec"]["containers"][0]
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == per_node
    assert c["image"].endswith("-gpu")  # the image whose stage installs vLLM
    assert "FROM cpu AS gpu" in (INFRA / "Dockerfile").read_text()


def test_rayjob_entrypoint_runs_a_spec_in_the_repo():
    import importlib

    from curate.config import load_config

    job = load(INFRA / "kuberay" / "rayjob.yaml")
    args = shlex.split(job["spec"]["entrypoint"])
    assert args[:3] == ["python", "-m", "jobs.run_pipeline"]
    importlib.import_module(args[2])
    workdir = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["working_dir"]
    assert workdir == re.search(r"^WORKDIR (\S+)", (INFRA / "Dockerfile").read_text(), re.M).group(1)
    assert load_config(REPO / args[3]).steps  # the image's copy of jobs/specs/ holds it
    assert args[args.index("-o") + 1].startswith("s3://")


def test_job_specs_validate():
    from curate.config import load_config

    specs = sorted((REPO / "jobs" / "specs").glob("*.yaml"))
    names = {p.name for p in specs}
    assert {"crawl.yaml", "dedup_dolma.yaml", "rephrase_gpu.yaml", "runtime_env.yaml"} <= names
    for p in specs:
        if p.name != "runtime_env.yaml":
            load_config(p)
    env = load(REPO / "jobs" / "specs" / "runtime_env.yaml")
    assert set(env) <= {"env_vars", "excludes", "pip", "conda", "container", "config", "nsight"}


def test_cluster_launcher_config():
    cfg = load(INFRA / "aws" / "cluster.yaml")
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "max_workers"):
        assert key in cfg
    assert cfg["provider"]["type"] == "aws" and cfg["provider"]["region"]
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert cfg["docker"]["image"].endswith(f":{VERSION}")
    assert cfg["available_node_types"]["head"]["resources"] == {"CPU": 0}
    gpu = cfg["available_node_types"]["gpu"]
    assert gpu["docker"]["worker_image"].endswith(f":{VERSION}-gpu")
    for node in cfg["available_node_types"].values():
        assert node["node_config"]["IamInstanceProfile"]  # credentials from the node's identity, none in configs
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


def dockerfile_cpu_stage() -> tuple[list[str], list[str], dict[str, str]]:
    """(COPY sources, RUN pip commands, ARG defaults) of the Dockerfile's first stage."""
    text = (INFRA / "Dockerfile").read_text()
    stage = text.split("\nFROM ", 2)[1]
    copies = [src for ln in stage.splitlines() if ln.startswith("COPY ") for src in ln.split()[1:-1]]
    runs = [ln[4:] for ln in stage.splitlines() if ln.startswith("RUN pip ")]
    args = dict(re.findall(r"^ARG (\w+)=(\S*)", stage, re.M))
    return copies, runs, args


def test_dockerfile_copies_what_exists_and_installs_the_make_set():
    copies, runs, _ = dockerfile_cpu_stage()
    for src in copies:
        assert (REPO / src).exists(), src
    makefile = (REPO / "Makefile").read_text()
    assert "-r infra/model-wheels.txt" in makefile and any("-r infra/model-wheels.txt" in r for r in runs)
    for lst in sorted((INFRA / "extractors").glob("*.txt")):  # every pinned extractor is in the image too
        assert any(f"extractors/{lst.stem} -r infra/extractors/{lst.name}" in r for r in runs), lst.name
    extras = set(re.search(r'"\.\[([\w,]+)\]"', next(r for r in runs if '".[' in r)).group(1).split(","))
    make_extras = set(re.search(r'-e "\.\[([\w,]+)\]"', makefile).group(1).split(","))
    # not in the image: tests, benchmarks, notebooks, the docs site
    assert extras == make_extras - {"test", "eval", "notebook", "docs"}
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= {c.rstrip("/") for c in copies}


@pytest.mark.slow
def test_dockerfile_install_runs_in_a_fresh_virtualenv(tmp_path):
    """The cpu stage's pip lines, as written, with TORCH_INDEX empty (this machine's index serves the CPU torch,
    and no other index is reachable); then the image's entrypoint and bundled models load."""
    copies, runs, args = dockerfile_cpu_stage()
    ctx = tmp_path / "opt-curate"
    ctx.mkdir()
    for src in copies:  # every COPY here keeps the source's path under WORKDIR
        (ctx / src).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, ctx / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / src, ctx / src)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           **{k: "" for k in args}}
    env.pop("PYTHONPATH", None)
    for cmd in runs:  # the image's prefix is /usr/local; here it is the venv
        cmd = cmd.replace("/usr/local/", f"{venv}/")
        r = subprocess.run(["bash", "-c", cmd + " -q"], cwd=ctx, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-3000:]}"
    py = str(venv / "bin" / "python")
    check = ("import os, ray, fasttext, trafilatura, s3fs;"
             "from scorers.langid import bundled_lid_model; assert os.path.exists(bundled_lid_model());"
             "from curate.models import bundled_gguf; assert bundled_gguf().exists();"
             "from operators.segment.model import load_model; load_model();"
             "from scorers.preselect.operator import PreSelect;"
             "from operators.extract.operator import pinned_trafilatura; pinned_trafilatura('1.11.0');"
             "from scorers.fineweb.url import assets_dir; assets_dir();"
             "print(ray.__version__)")
    r = subprocess.run([py, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == RAY_VERSION, r.stderr[-3000:]
    r = subprocess.run([py, "-m", "jobs.run_pipeline", "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "config" in r.stdout
