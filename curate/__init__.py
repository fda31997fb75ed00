"""curate: distributed data curation for LLM pretraining corpora, on Ray.

The Python surface (`curate.api`, loaded on first use so that `import curate` stays cheap in every worker):
`Pipeline` (build, validate and run a pipeline, as `curate run` does), `open` (a run's output as a `Run`: stats,
documents, what was dropped and why), `apply` (one batch step over a DataFrame, Arrow table or list of dicts, in
this process), and `ConfigError` (what a mistake in a pipeline or a step raises: one line per problem).
"""

import time as _time
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
# when this process imported curate: the start of a command's `startup` phase (stats.json `phases`), a few tens
# of milliseconds after the interpreter's own start
STARTED = _time.time()

__all__ = ["ConfigError", "Pipeline", "Run", "apply", "open", "__version__"]

if TYPE_CHECKING:
    from curate.api import Pipeline, Run, apply, open  # noqa: A004
    from curate.config import ConfigError


def __getattr__(name: str) -> Any:
    if name in ("Pipeline", "Run", "apply", "open"):
        from curate import api

        return getattr(api, name)
    if name == "ConfigError":
        from curate.config import ConfigError

        return ConfigError
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
