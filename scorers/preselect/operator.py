"""preselect: PreSelect quality score (Shum et al. 2025, "Predictive Data Selection") with a fastText classifier.

PreSelect keeps documents on which language models' losses rank the models the way their benchmark scores do;
a cheap fastText classifier trained on such documents (``curate train preselect``) scores a corpus. This step
only scores: ``preselect__fasttext__score`` = P(``__label__1``); the ``select`` step keeps the top fraction by
characters (or ``filter`` applies a fixed threshold).

The text is prepared exactly as in training (and as in the paper's released code): newlines -> spaces, nothing
else. ``model_path`` takes any fastText supervised ``.bin``/``.ftz`` with labels ``__label__1``/``__label__0``,
so the officially released PreSelect scorer loads unchanged from a path; the default is the small scorer this
project trained and ships (``scorers/preselect/assets/``, see its MODEL_CARD.md). Only the first ``max_chars``
characters are scored, which bounds the cost of a 50 MB page (fastText averages over the words anyway).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.operator import BatchOperator, Params, set_column

POSITIVE = "__label__1"


def bundled_scorer_path() -> str:
    return str(Path(__file__).parent / "assets" / "preselect.ftz")


def prepare(text: str | None, max_chars: int | None = None) -> str:
    """The paper's preprocessing: newlines become spaces (fastText reads one line per example)."""
    t = (text or "")[:max_chars] if max_chars else (text or "")
    return t.replace("\r", " ").replace("\n", " ")


def load_scorer(path: str | None = None):
    import fasttext

    path = path or bundled_scorer_path()
    if not Path(path).exists():
        raise FileNotFoundError(f"preselect: model {path} not found (train one with `curate train preselect`)")
    model = fasttext.load_model(path)
    if POSITIVE not in model.get_labels():
        raise ValueError(f"preselect: {path} has labels {model.get_labels()[:4]}, expected {POSITIVE!r}")
    return model


def positive_probability(model, texts: list[str]) -> np.ndarray:
    """P(__label__1) per text, batched: one fastText call for the batch, all labels (k=-1)."""
    labels, probs = model.predict(texts, k=-1)
    out = np.empty(len(texts), dtype=np.float64)
    for i, (labs, ps) in enumerate(zip(labels, probs)):
        d = dict(zip(labs, ps))
        out[i] = min(1.0, max(0.0, float(d.get(POSITIVE, 0.0))))
    return out


class PreSelectParams(Params):
    model_path: str | None = Field(None, description="fastText .bin/.ftz with __label__1/__label__0 (e.g. the "
                                   "released PreSelect scorer); default: the bundled scorer.")
    max_chars: int | None = Field(100_000, gt=0, description="Characters of each document scored (null: all).")


class PreSelect(BatchOperator):
    """PreSelect fastText score P(__label__1) per document, as an attribute."""

    name = "preselect"
    Params = PreSelectParams
    outputs = {"preselect__fasttext__score": pa.float64()}
    default_compute = "actors"  # the model loads once per actor

    def setup(self) -> None:
        self.model = load_scorer(self.params.model_path)  # type: ignore[attr-defined]

    def process(self, table: pa.Table) -> pa.Table:
        m = self.params.max_chars  # type: ignore[attr-defined]
        texts = [prepare(t, m) for t in table.column("text").to_pylist()]
        scores = np.round(positive_probability(self.model, texts), 6)
        return set_column(table, "preselect__fasttext__score", pa.array(scores, pa.float64()))
