"""The Python surface (`curate.Pipeline`, `curate.open`, `curate.apply`) and the notebook that teaches it.

`Pipeline(...).run()` must write what `curate run` writes, byte for byte; `apply` must give the attributes the
pipeline gave the same documents; a mistake must be the same one line from Python as from the command line; and
`examples/notebooks/quickstart.ipynb` must run top to bottom in a real kernel (nbclient).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

import curate
from conftest import REPO

ADDED = "2026-01-01T00:00:00Z"


def _hashes(root: Path) -> dict[str, str]:
    subs = ("documents", "attributes", "stats/docs", "_parts", "tokens")
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in subs for p in sorted((root / sub).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    raw = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    raw["output"]["added"] = ADDED
    raw["input"]["paths"] = [str(REPO / "data" / "sample")]
    path = tmp_path_factory.mktemp("api") / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runs(ray_session, config, tmp_path_factory):
    """The same config run by `curate run` (a subprocess) and by `curate.Pipeline(...).run()` (this process)."""
    root = tmp_path_factory.mktemp("runs")
    cli = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(config), "-o", str(root / "cli"), "-q"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    run = curate.Pipeline(config).run(str(root / "py"))
    return root / "cli", run


def test_pipeline_run_writes_what_curate_run_writes(runs):
    cli, run = runs
    assert run.status == "done" and run.stats["totals"]["balanced"]
    assert _hashes(cli) == _hashes(Path(run.path))


def test_run_tables(runs):
    cli, run = runs
    opened = curate.open(cli)
    steps = opened.steps()
    assert list(steps["step"])[:3] == ["read", "url_filter", "html_langid"]
    assert steps["out"].iloc[-1] == opened.stats["totals"]["documents_out"]
    docs = opened.docs()
    assert len(docs) == opened.stats["totals"]["documents_in"]
    dropped = opened.dropped(reason="not_english", n=2)
    assert len(dropped) == 2 and set(dropped["step"]) == {"filter#2"} and dropped["url"].notna().all()
    kept = opened.documents()
    assert kept["text"].str.len().min() > 0  # long documents are written in pieces (shard's max_doc_tokens)
    assert set(kept["id"].str.replace(r"-part-\d+$", "", regex=True)) == set(docs[docs["fate"] == "kept"]["id"])
    gopher = opened.attributes("gopher")
    assert list(gopher["id"]) == list(kept["id"])


def test_apply_gives_the_pipelines_attributes(runs):
    """gopher over the kept documents' text as it was when the pipeline scored it is not the written text (the
    C4 edit came after); fineweb_quality ran on the edited text, which is what was written (PII aside): apply
    over the written documents gives the pipeline's own values, document for document."""
    _, run = runs
    kept = run.documents()
    whole = ~kept["text"].str.contains("email@example.com|22.214.171.124", regex=True) & \
        ~kept["id"].str.contains("-part-")  # not edited after scoring, not cut into pieces by shard
    kept = kept[whole].reset_index(drop=True)
    assert len(kept) >= 10
    scored = curate.apply("fineweb_quality", kept[["id", "text"]])
    assert list(scored.columns[:2]) == ["id", "text"] and scored["fate"].isna().all()
    attrs = run.attributes("fineweb_quality").set_index("id")
    for _, row in scored.iterrows():
        for col in [c for c in scored.columns if c.startswith("fineweb_quality__")]:
            want = [list(span) for span in attrs.loc[row["id"], col]]
            assert len(want) == 1 and row[col] == pytest.approx(want[0][2]), (row["id"], col)


def test_apply_marks_what_a_rule_drops_and_keeps_the_text():
    rows = [{"text": "word " * 80, "metadata": {"url": "https://example.org/"}}, {"text": "too short"}]
    scored = curate.apply("gopher", rows)
    assert isinstance(scored, list) and scored[0]["gopher__quality__words"] == 80
    decided = curate.apply({"name": "filter", "rules": [{"reason": "short", "keep": "gopher__quality__words >= 50"}]},
                           scored)
    assert [(r["fate"], r["reason"]) for r in decided] == [(None, None), ("drop", "short")]
    assert decided[1]["text"] == "too short"  # the dropped row keeps its text, to be read
    again = curate.apply("fineweb_quality", decided)  # chained: what was dropped stays dropped, unscored
    assert again[1]["fate"] == "drop" and again[1]["fineweb_quality__lines__punct_lines_frac"] is None
    assert again[0]["fineweb_quality__lines__punct_lines_frac"] is not None
    table = curate.apply("gopher", pa.table({"text": ["a b c"]}))
    assert isinstance(table, pa.Table) and table.column("gopher__quality__words").to_pylist() == [3]


def test_a_mistake_is_the_same_line_from_python_as_from_the_cli(tmp_path):
    raw = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    raw["steps"][6] = {"name": "gopher", "max_ngram": 3}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw, sort_keys=False))
    cli = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(bad), "-o", str(tmp_path / "o")],
                         cwd=REPO, capture_output=True, text=True)
    assert cli.returncode == 2
    for build in (lambda: curate.Pipeline(bad), lambda: curate.Pipeline(raw)):
        with pytest.raises(curate.ConfigError) as e:
            build()
        assert str(e.value).splitlines()[-1].strip() in cli.stderr
        assert "steps[6].max_ngram" in str(e.value)
    with pytest.raises(curate.ConfigError, match=r"steps\[0\]\.name: unknown operator 'gopherr'"):
        curate.Pipeline([{"name": "gopherr"}], input={"paths": ["data/sample/"]})
    with pytest.raises(curate.ConfigError, match=r"step\.name: unknown operator 'gopherr'"):
        curate.apply("gopherr", [{"text": "x"}])
    with pytest.raises(curate.ConfigError, match="no earlier step makes"):
        curate.apply({"name": "filter", "rules": [{"reason": "x", "keep": "gopher__quality__words > 1"}]},
                     [{"text": "x"}])
    with pytest.raises(curate.ConfigError, match="whole dataset"):
        curate.apply("exact_dedup", [{"text": "x"}])


def test_pipeline_from_steps_round_trips_to_yaml(tmp_path):
    pipe = curate.Pipeline([{"name": "extract"}, {"name": "langid"}, {"name": "gopher"}],
                           input={"paths": ["data/sample/"]}, output={"path": "out/x"})
    assert pipe.steps == ["extract", "langid", "gopher"]
    again = curate.Pipeline(yaml.safe_load(pipe.to_yaml(tmp_path / "p.yaml")))
    assert again.steps == pipe.steps and again.config.input == pipe.config.input
    assert curate.Pipeline(tmp_path / "p.yaml").steps == pipe.steps
    assert set(curate.__all__) >= {"Pipeline", "Run", "apply", "open", "ConfigError"}


def test_the_quickstart_notebook_runs(tmp_path):
    """Top to bottom in a real kernel (ipykernel, this venv's python), as a reader would run it."""
    import nbclient
    import nbformat

    nb = nbformat.read(REPO / "examples" / "notebooks" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    (tmp_path / "data").symlink_to(REPO / "data")
    (tmp_path / "pipeline.yaml").symlink_to(REPO / "pipeline.yaml")
    client.execute()
    outputs = "\n".join(o.get("text", "") or json.dumps(o.get("data", {}).get("text/plain", ""))
                        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "documents_out" in outputs or "kept" in outputs
    assert (tmp_path / "out" / "notebook" / "stats.json").exists()
    assert pd.read_json(tmp_path / "out" / "notebook" / "stats.json", typ="series")["status"] == "done"


def test_rejects_keep_what_a_rule_dropped_to_read(ray_session, tmp_path):
    """output.rejects: the text of every document a step dropped is under OUT/rejects/<step>/, and `dropped()`
    shows it beside the reason; the kept documents are what they are without it."""
    pipe = curate.Pipeline([{"name": "extract"}, {"name": "langid"},
                            {"name": "filter", "rules": [{"reason": "not_english",
                                                          "keep": "langid__fasttext__en > 0.65"}]}],
                           input={"paths": [str(REPO / "data" / "sample")]},
                           output={"rejects": True, "added": ADDED})
    run = pipe.run(str(tmp_path / "out"))
    dropped = run.dropped(reason="not_english", n=3)
    assert len(dropped) == 3 and dropped["text"].str.len().min() > 0
    assert (tmp_path / "out" / "rejects" / "filter").is_dir()
    extract_drops = run.dropped(step="extract")
    assert len(extract_drops) and extract_drops["text"].isna().all()  # nothing was extracted from them
