"""Config validation: every problem is reported with its key path, before any work or output exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from curate.config import ConfigError, load_config, parse_config


def base(**over) -> dict:
    cfg = {"input": {"paths": ["data/sample/"]}, "steps": [{"name": "extract"}, {"name": "langid"}]}
    cfg.update(over)
    return cfg


def problems(raw) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    return e.value.problems


def test_default_pipeline_is_valid():
    cfg = load_config(REPO / "pipeline.yaml")
    assert [s.name for s in cfg.steps] == [
        "url_filter", "html_langid", "filter", "extract", "langid", "filter", "gopher", "c4", "filter", "edit",
        "fineweb_quality", "filter", "preselect", "exact_dedup", "minhash_dedup", "filter", "pii", "edit", "segment",
        "shard"]
    # it starts from the FineWeb recipe: the same steps with the same settings up to the PreSelect score
    recipe = load_config(REPO / "recipes" / "fineweb.yaml")
    fineweb = [(s.name, s.params) for s in recipe.steps][:12]
    ours = [(s.name, s.params) for s in cfg.steps][:12]
    assert [n for n, _ in ours] == [n for n, _ in fineweb]
    differ = {n: {k for k in type(a).model_fields if getattr(a, k) != getattr(b, k)}
              for (n, a), (_, b) in zip(ours, fineweb) if a != b}
    # the cascade over the installed trafilatura, not FineWeb's exact pinned 1.11 (URL in, metadata out); scores
    # kept for more languages
    assert differ == {"extract": {"engine", "trafilatura_version", "pass_url", "with_metadata"},
                      "langid": {"languages"}}


def test_unknown_operator():
    (msg,) = problems(base(steps=[{"name": "extrakt"}]))
    assert msg.startswith("steps[0].name: unknown operator 'extrakt'") and "extract" in msg


def test_unknown_step_key_and_wrong_type_have_paths():
    msgs = problems(base(steps=[{"name": "extract", "timeout": 5}, {"name": "langid", "max_chars": "many"}]))
    assert any(m.startswith("steps[0].timeout: Extra inputs are not permitted") for m in msgs)
    assert any(m.startswith("steps[1].max_chars:") for m in msgs)


def test_unknown_top_level_and_input_keys():
    msgs = problems({**base(), "outptu": {}, "input": {"paths": ["x"], "fromat": "warc"}})
    assert "outptu: unknown key" in msgs[0]
    assert any(m.startswith("input.fromat:") for m in msgs)


def test_resources_are_validated():
    (msg,) = problems(base(steps=[{"name": "langid", "resources": {"num_cpus": -1}}]))
    assert msg.startswith("steps[0].resources.num_cpus:")


def test_filter_names_must_exist_in_earlier_steps():
    (msg,) = problems(base(steps=[{"name": "extract"}, {"name": "filter", "rules": [
        {"reason": "x", "keep": "langid__fasttext__confidence > 0.5"}]}]))
    assert msg.startswith("steps[1]: rules[0]:") and "langid__fasttext__confidence" in msg and "no earlier step" in msg


def test_filter_rejects_code():
    msgs = problems(base(steps=[{"name": "langid"}, {"name": "filter", "rules": [
        {"reason": "x", "keep": "__import__('os').system('true')"}]}]))
    assert msgs and msgs[0].startswith("steps[1]")


def test_filter_rule_needs_exactly_one_of_keep_drop():
    msgs = problems(base(steps=[{"name": "langid"}, {"name": "filter", "rules": [{"reason": "x"}]}]))
    assert "exactly one of `keep` or `drop`" in msgs[0]


def test_bad_config_cli_gives_one_clear_error_and_no_output(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base(steps=[{"name": "extract", "timeout_s": "soon"}])))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(bad), "-o", str(out)],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert "steps[0].timeout_s" in res.stderr
    assert not out.exists()


def test_not_yaml(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("input: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_validate_command_ok():
    res = subprocess.run([sys.executable, "-m", "curate.cli", "validate", "pipeline.yaml"], capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode == 0 and ("url_filter -> html_langid -> filter -> extract -> langid -> filter#2 -> gopher"
                                    " -> c4") in res.stdout


def test_missing_input_files_fail_before_output(ray_session, tmp_path):
    from curate.runner import run_pipeline

    cfg = parse_config({"input": {"paths": [str(tmp_path / "nothing-*.warc.gz")]}, "steps": [{"name": "langid"}]})
    with pytest.raises(FileNotFoundError):
        run_pipeline(cfg, str(tmp_path / "out"), progress=False)
    assert not Path(tmp_path / "out").exists()


def test_an_output_that_cannot_be_written_is_one_clear_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    res = subprocess.run([sys.executable, "-m", "curate.cli", "run", "pipeline.yaml", "-o", str(blocker / "out")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert str(blocker) in res.stderr


def test_storage_options_refuse_credentials():
    from curate.config import ConfigError, parse_config

    raw = {"input": {"paths": ["s3://b/in/"], "storage_options": {"anon": True}},
           "output": {"path": "s3://b/out", "storage_options": {"client_kwargs": {"aws_secret_access_key": "x"}}},
           "steps": [{"name": "langid"}]}
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert "client_kwargs.aws_secret_access_key" in str(e.value) and "AWS_ACCESS_KEY_ID" in str(e.value)
    raw["output"]["storage_options"] = {"endpoint_url": "http://127.0.0.1:9000", "token": "anon"}
    assert parse_config(raw).output.storage_options["endpoint_url"] == "http://127.0.0.1:9000"


def test_storage_options_follow_the_longest_prefix(monkeypatch):
    from curate import storage

    monkeypatch.delenv(storage.ENV, raising=False)
    storage.configure({"s3://commoncrawl/crawl-data/*/warc/*.gz": {"anon": True},
                       "s3://mine/run": {"endpoint_url": "http://127.0.0.1:9000"}, "data/local/": {"x": 1}})
    try:
        assert storage.options_for("s3://commoncrawl/crawl-data/CC/warc/a.gz") == {"anon": True}
        assert storage.options_for("s3://mine/run/documents/a.jsonl.gz") == {"endpoint_url": "http://127.0.0.1:9000"}
        assert storage.options_for("s3://mine/running") == {}  # a prefix of the name, not of the path
        assert storage.options_for("data/local/x.warc") == {}  # local paths take no options
        assert json.loads(storage.env()[storage.ENV]) == json.loads(os.environ[storage.ENV])
    finally:
        storage.configure({})


def test_relative_inputs_stay_relative(monkeypatch):
    """A job's workers run in its working_dir, unpacked at a different absolute path on every node."""
    from curate.readers import expand_paths

    monkeypatch.chdir(REPO)
    rel = expand_paths(["data/sample/"])
    absolute = expand_paths([str(REPO / "data" / "sample")])
    assert all(u.startswith("data/sample/") for u, _ in rel)
    assert [k for _, k in rel] == [k for _, k in absolute]
    assert [str(REPO / u) for u, _ in rel] == [u for u, _ in absolute]
