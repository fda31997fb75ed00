"""curate: distributed data curation for LLM pretraining corpora, on Ray."""

import time as _time

__version__ = "0.1.0"
# when this process imported curate: the start of a command's `startup` phase (stats.json `phases`), a few tens
# of milliseconds after the interpreter's own start
STARTED = _time.time()
