"""A user's own operators, from a package of their own, through the `curate.operators` entry points only.

The example package (examples/curate-blocklist) is installed with pip into a temporary folder and put on
PYTHONPATH of a real `curate` process (and so of its local Ray's workers): nothing in curate names it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SAMPLE, read_zst_jsonl

EXAMPLE = REPO / "examples" / "curate-blocklist"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("plugin")
    src = tmp_path_factory.mktemp("plugin-src") / EXAMPLE.name  # pip builds in the source tree: not in the repo
    shutil.copytree(EXAMPLE, src)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True)
    return target


def _curate(args: list[str], *paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    return subprocess.run([sys.executable, "-m", "curate.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)


def test_curate_operators_lists_the_plugin_with_its_package(plugin_path):
    res = _curate(["operators"], plugin_path)
    assert res.returncode == 0, res.stderr
    ops = json.loads(res.stdout)
    assert ops["url_blocklist"]["package"] == "curate-blocklist" and ops["url_blocklist"]["version"] == "0.1.0"
    assert ops["caps_ratio"]["outputs"] == {"caps_ratio__letters__caps_ratio": "double"}
    assert ops["extract"]["package"] == "curate"


def test_the_plugin_runs_in_a_pipeline(plugin_path, tmp_path):
    cfg = {"input": {"paths": [str(SAMPLE / "dolma_warc_sample-0000.warc.gz"),
                               str(SAMPLE / "resiliparse_warcfile.warc.gz")]},
           "steps": [{"name": "extract", "timeout_s": 120},
                     {"name": "url_blocklist", "domains": ["github.io"]},
                     {"name": "caps_ratio"},
                     {"name": "filter", "rules": [{"reason": "shouting", "keep": "caps_ratio__letters__caps_ratio <= 0.5"}]}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg, "steps": [{"name": "url_blocklist", "domain": ["x"]}]}))
    res = _curate(["validate", str(bad)], plugin_path)
    assert res.returncode == 2 and "steps[0].domain" in res.stderr, res.stderr  # its Params are validated

    out = tmp_path / "out"
    res = _curate(["run", str(path), "-o", str(out), "-q"], plugin_path)
    assert res.returncode == 0, res.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    step = next(s for s in stats["steps"] if s["step"] == "url_blocklist")
    assert step["dropped"].get("blocked_domain", 0) > 0
    kept = [d for f in sorted((out / "documents").rglob("*.jsonl.gz")) for d in read_zst_jsonl(f)]
    assert kept and not any(".github.io/" in (d["metadata"].get("url") or "") for d in kept)
    attrs = [a for f in sorted((out / "attributes" / "caps_ratio").rglob("*.jsonl.gz")) for a in read_zst_jsonl(f)]
    assert {a["id"] for a in attrs} >= {d["id"] for d in kept}


def test_two_packages_declaring_one_name_is_an_error_naming_both(plugin_path, tmp_path):
    dup = tmp_path / "dup"
    info = dup / "other_filters-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-filters\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[curate.operators]\nurl_blocklist = other_filters:Blocklist\n")
    res = _curate(["validate", "pipeline.yaml"], plugin_path, dup)
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "url_blocklist" in line and "curate-blocklist" in line and "other-filters" in line, line
    assert "Traceback" not in res.stderr
