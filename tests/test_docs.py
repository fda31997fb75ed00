"""The README is the user's manual: every operator, parameter and config key must be documented there."""

from __future__ import annotations

import re

from conftest import REPO
from curate.config import InputSpec, OutputSpec, RaySpec, describe_operators
from curate.operator import Resources


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = re.search(r"\n#{2,4} ", text[start + len(heading):])
    return text[start: start + len(heading) + (nxt.start() if nxt else len(text))]


def test_every_operator_and_parameter_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name, info in describe_operators().items():
        sec = _section(readme, f"#### `{name}`")
        for param in info["params"]:
            assert f"`{param}`" in sec, f"README: {name}.{param} is not documented"
        for out in info["outputs"]:
            key = out.rsplit("__", 1)[1]
            assert key in sec or out in sec, f"README: output {out} of {name} is not documented"


def test_every_config_key_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for heading, model in (("### `input`", InputSpec), ("### `output`", OutputSpec), ("### `ray`", RaySpec),
                           ("### Step `resources`", Resources)):
        sec = _section(readme, heading)
        for key in model.model_fields:
            assert f"`{key}`" in sec, f"README: {heading} {key} is not documented"
