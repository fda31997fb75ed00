"""Config validation: every problem is reported with its key path, before any work or output exists."""

from __future__ import annotations

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
    assert [s.name for s in cfg.steps] == ["extract", "langid", "quality_signals", "preselect", "exact_dedup",
                                           "minhash_dedup", "filter", "segment", "shard"]


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
    assert res.returncode == 0 and ("extract -> langid -> quality_signals -> preselect -> exact_dedup -> minhash_dedup"
                                    " -> filter -> segment") in res.stdout


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
