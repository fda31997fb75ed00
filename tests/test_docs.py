"""The documentation site: it builds strictly, its generated reference is current, every pipeline snippet is a
valid config, every command line names flags that exist, and a real browser finds the search, the operator
reference and a tutorial."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

DOCS = REPO / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md")) + [REPO / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
sys.path.insert(0, str(DOCS))


def _blocks(lang: set[str]) -> list[tuple[Path, str]]:
    return [(p, m.group(2)) for p in PAGES for m in FENCE.finditer(p.read_text()) if m.group(1) in lang]


def test_generated_pages_are_current():
    r = subprocess.run([sys.executable, str(DOCS / "gen.py"), "--check"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_operator_page_explains_how_it_works():
    from curate.config import describe_operators

    for name, info in describe_operators().items():
        page = (DOCS / "reference" / "operators" / f"{name}.md").read_text()
        assert "## How it works" in page, f"docs/_notes/operators/{name}.md is missing"
        for param in info["params"]:
            assert f"`{param}`" in page


def test_every_pipeline_snippet_is_a_valid_config():
    """A snippet with `steps:` is a whole pipeline.yaml (validated as `curate validate` does); a list of steps is
    validated step by step (parameters and resources: the attributes earlier steps make are not known there)."""
    from curate.config import ConfigError, parse_config, registry
    from curate.operator import Resources

    checked = 0
    for path, text in _blocks({"yaml"}):
        doc = yaml.safe_load(text)
        where = f"{path.relative_to(REPO)}: {text.splitlines()[0]}"
        if isinstance(doc, dict) and "steps" in doc:
            try:
                parse_config(doc)
            except ConfigError as e:
                pytest.fail(f"{where}: {e}")
        elif isinstance(doc, list) and all(isinstance(s, dict) and "name" in s for s in doc):
            ops = registry()
            for step in doc:
                assert step["name"] in ops, f"{where}: unknown operator {step['name']}"
                body = {k: v for k, v in step.items() if k not in ("name", "resources")}
                ops[step["name"]].Params.model_validate(body)
                Resources.model_validate(step.get("resources") or {})
        elif isinstance(doc, dict) and "models" in doc:
            assert all({"name", "loader", "score"} <= set(m) for m in doc["models"]), where
        else:
            continue
        checked += 1
    assert checked >= 15


def _options(parser: argparse.ArgumentParser) -> tuple[set[str], dict[str, argparse.ArgumentParser]]:
    opts, subs = set(), {}
    for a in parser._actions:
        opts.update(a.option_strings)
        if isinstance(a, argparse._SubParsersAction):
            subs.update(a.choices)
    return opts, subs


def _commands(text: str) -> list[str]:
    """`curate ...` command lines in shell blocks and inline code, with continuations joined, comments cut."""
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) not in ("", "sh", "bash", "console"):
            continue
        body = m.group(2).replace("\\\n", " ")
        for line in body.splitlines():
            line = line.split(" #")[0].strip()
            for part in re.split(r";|&&", line):
                part = part.strip()
                if part.startswith(("curate ", ".venv/bin/curate ")):
                    out.append(part)
    for m in re.finditer(r"`((?:\.venv/bin/)?curate [^`]+)`", text):
        out.append(m.group(1))
    return out


def test_every_cli_example_names_commands_and_flags_that_exist():
    from curate.cli import build_parser

    root = build_parser()
    checked = 0
    for path in PAGES:
        for cmd in _commands(path.read_text()):
            tokens = shlex.split(cmd.replace("…", "..."), comments=False)[1:]
            parser, seen = root, ["curate"]
            opts, subs = _options(parser)
            for tok in tokens:
                if tok in subs and parser is not None:
                    parser = subs[tok]
                    seen.append(tok)
                    opts, subs = _options(parser)
                elif tok.startswith("-") and tok not in ("-", "--"):
                    flag = tok.split("=")[0]
                    assert flag in opts, f"{path.relative_to(REPO)}: `{cmd}`: {' '.join(seen)} has no {flag}"
            if len(seen) == 1 and tokens and not tokens[0].startswith("-") and tokens[0] not in ("COMMAND", "..."):
                pytest.fail(f"{path.relative_to(REPO)}: `{cmd}`: no command {tokens[0]!r}")
            checked += 1
    assert checked >= 30


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(out)],
                       cwd=REPO, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_site_builds_strictly_with_every_section(site):
    home = (site / "index.html").read_text()
    for journey in ("tutorials/crawl-to-tokens/", "tutorials/dedup-dolma/", "tutorials/rephrase/",
                    "tutorials/preselect/", "tutorials/cluster/"):
        assert f'href="{journey}"' in home, f"the home page does not link {journey}"
    for page in ("get-started", "reference/cli", "reference/pipeline-yaml", "reference/operators/minhash_dedup",
                 "benchmarks/parity", "concepts/accounting", "design"):
        assert (site / page / "index.html").exists(), page


def test_readme_is_short():
    assert len((REPO / "README.md").read_bytes()) <= 12 * 1024


def test_a_browser_finds_search_reference_and_tutorial(site):
    from playwright.sync_api import expect, sync_playwright

    from screenshots import serve, take

    expect.set_options(timeout=30_000)  # a loaded 2-core machine: the search index loads in a web worker
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make browser` (run by `make test`) installs it")
    with serve(site) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        expect(page.locator("h1").first).to_contain_text("curate")
        page.locator("label.md-search__icon, .md-search__input").first.click()
        box = page.locator("input.md-search__input")
        expect(box).to_be_visible()
        # the index (every page's text) is built in a web worker; typed before it is ready, a query is lost
        expect(page.locator(".md-search-result__meta")).to_contain_text("Type to start", timeout=180_000)
        box.press_sequentially("minhash", delay=50)
        expect(page.locator(".md-search-result__item").first).to_be_visible()
        page.goto(url + "reference/operators/minhash_dedup/")
        expect(page.locator("h1").first).to_contain_text("minhash_dedup")
        expect(page.locator("table code", has_text="bands").first).to_be_visible()
        page.goto(url + "tutorials/dedup-dolma/")
        expect(page.locator("h1").first).to_contain_text("Deduplicate")
        expect(page.locator("nav.md-nav--primary")).to_contain_text("Tutorials")
        assert not errors, errors
        take(b, url, REPO / "out" / "test-artifacts" / "docs")
        b.close()
