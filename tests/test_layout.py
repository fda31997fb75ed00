"""The layout is the architecture: the framework (`curate/`) imports no stage, and a stage imports only the
framework and its own package. Checked on the source, so a new import that breaks the rule fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

STAGE_ROOTS = ("operators", "scorers")


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module)
            mods.update(f"{node.module}.{a.name}" for a in node.names)
    return mods


def _stage_of(path: Path) -> str:
    """`operators.dedup` for operators/dedup/x.py, `operators.filter` for operators/filter.py."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts
    return ".".join(parts[:2])


def test_the_framework_imports_no_stage():
    bad = []
    for path in sorted((REPO / "curate").rglob("*.py")):
        for mod in _imports(path):
            if mod.split(".")[0] in STAGE_ROOTS:
                bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def test_a_stage_imports_only_the_framework_and_itself():
    bad = []
    for root in STAGE_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if path.name == "__init__.py" and path.parent.name == root:
                continue
            own = _stage_of(path)
            for mod in _imports(path):
                if mod.split(".")[0] in STAGE_ROOTS and not (mod == own or mod.startswith(own + ".")) \
                        and mod != own.split(".")[0]:
                    bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def test_every_stage_comes_in_through_an_entry_point():
    from curate.operator import plugins

    found = plugins()
    for name in ("extract", "langid", "quality_signals", "preselect", "exact_dedup", "minhash_dedup", "filter",
                 "select", "segment", "shard", "rephrase"):
        assert found[name].distribution == "curate", found[name]


def test_a_cluster_run_ships_the_framework_and_each_step_package():
    from curate.config import load_config
    from curate.runner import code_packages

    shipped = code_packages(load_config(REPO / "pipeline.yaml"))
    assert shipped == [str(REPO / "curate"), str(REPO / "operators"), str(REPO / "scorers")]
