"""segment: sentence spans per document (SaT-style), as an attribute; the text itself is never changed.

Output ``segment__sentences__spans`` is ``[[start, end, prob], ...]`` in character (code point) offsets that tile the
text: each sentence carries the whitespace after it, so ``"".join(text[s:e] for s, e, _ in spans) == text``;
``prob`` is the boundary probability at the sentence's last character (1.0 at the end of the text). Documents
without a non-space character get ``[]``. ``segment__sentences__count`` is the count. Later steps (rephrase chunking,
shard's ``max_doc_tokens`` splits) read the spans through their ``spans_attribute``.

Backends:

* ``bundled`` (default): the small SaT-style character model trained by ``curate train segmenter`` and shipped in
  the package (``operators/segment/assets/``, numpy inference, no torch). Robust to missing punctuation/casing.
  Thresholds per kind of text and per language (``metadata.language``); on punctuated text sentencex's boundaries
  are an input of the model and one more signal in the decision (``rule_signal``).
* ``sat``: the real SaT models through ``wtpsplit`` (or ``wtpsplit-lite``): ``model`` is a hub name
  (``sat-3l-sm``; needs hub access or a filled HF cache) or a local directory with ``model_optimized.onnx`` and the
  XLM-R tokenizer files (``sat_tokenizer`` when they live elsewhere).
* ``rules``: sentencex (rule-based, ~300 languages); the language is the document's ``metadata.language``
  (langid writes it), else ``language``.

``max_length``/``min_length`` (characters) work like wtpsplit's: every piece fits, the text stays exact.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import orjson
import pyarrow as pa
from pydantic import Field, model_validator

from curate.operator import BatchOperator, Params, set_column
from curate.schema import SPANS
from operators.segment.model import PUNCTUATED, THRESHOLD_KEYS, fit_lengths, load_model, model_thresholds, \
    rule_masks, sentence_ends, spans_from_boundaries, text_kind



class SegmentParams(Params):
    backend: Literal["bundled", "sat", "rules"] = Field("bundled", description="Which segmenter runs.")
    model: str | None = Field(None, description="bundled: a .npz from `curate train segmenter` (default: the "
                              "shipped one); sat: hub name (sat-3l-sm) or local model directory.")
    threshold: float | None = Field(None, gt=0, lt=1, description="Boundary probability above which a sentence "
                                    "ends; default: the model's own per kind of text (bundled), 0.25 for SaT -sm "
                                    "models, else 0.025. bundled: sets it for punctuated text (clean and lower-cased).")
    threshold_unpunctuated: float | None = Field(None, gt=0, lt=1, description="bundled: the threshold for text "
                                                 "with (almost) no terminal punctuation, cased or lower-cased; "
                                                 "default: the model's own.")
    rule_signal: bool = Field(True, description="bundled: on punctuated text, sentencex's boundaries (in the "
                              "document's language, from langid; its default rules when there is none) are an "
                              "input of the model, and they need less probability, the model's other candidates "
                              "more (both thresholds chosen on held-out text).")
    max_length: int | None = Field(None, gt=0, description="Max characters per sentence; longer ones are cut at "
                                   "the most probable places so every piece fits.")
    min_length: int | None = Field(None, gt=0, description="Sentences shorter than this merge into a neighbour.")
    language: str = Field("en", description="rules: language code for documents whose metadata has no `language` "
                          "(langid writes it).")
    sat_tokenizer: str | None = Field(None, description="sat: XLM-R tokenizer directory or name (default: the "
                                      "model directory when it has tokenizer files, else xlm-roberta-base).")
    batch_size: int = Field(64, ge=1, description="Documents per model call.")

    @model_validator(mode="after")
    def _check(self) -> "SegmentParams":
        if self.backend == "sat" and not self.model:
            raise ValueError("backend `sat` needs `model`: a SaT hub name (e.g. sat-3l-sm) or a local directory")
        if self.max_length and self.min_length and self.min_length > self.max_length:
            raise ValueError("min_length must not exceed max_length")
        return self


class Segment(BatchOperator):
    """Sentence boundaries as character spans (bundled SaT-style model, real SaT, or rules)."""

    name = "segment"
    Params = SegmentParams
    outputs = {"segment__sentences__spans": SPANS, "segment__sentences__count": pa.int32()}

    def setup(self) -> None:
        p: SegmentParams = self.params  # type: ignore[assignment]
        self.by_lang: dict[str | None, dict[str, float]] = {}
        if p.backend == "bundled":
            self.model = load_model(p.model)
            self.own = self.model.config  # the model's thresholds, general and per language
            self.overrides = {}
            if p.threshold:  # one number for punctuated text: the rule signal's pair collapses to it
                self.overrides.update({k: p.threshold for k in THRESHOLD_KEYS if k.startswith(PUNCTUATED)})
            if p.threshold_unpunctuated or p.threshold:
                u = p.threshold_unpunctuated or p.threshold
                self.overrides.update(nopunct=u, both=u)
        elif p.backend == "sat":
            self.model = load_sat(p.model, p.sat_tokenizer)  # type: ignore[arg-type]
            self.own = None
            t = p.threshold or (0.25 if str(p.model).rstrip("/").endswith("-sm") else 0.025)
            u = p.threshold_unpunctuated or t
            self.overrides = {k: t for k in THRESHOLD_KEYS if k.startswith(PUNCTUATED)} | {"nopunct": u, "both": u}
        else:
            import sentencex

            self.model = sentencex

    def thresholds(self, lang: str | None) -> dict[str, float]:
        """Per kind of text: the parameters where given, else the bundled model's own for the document's language
        (langid's ``metadata.language``; the model's general ones when it has none for that language)."""
        if lang not in self.by_lang:
            self.by_lang[lang] = {**(model_thresholds(self.own, lang) if self.own else {}), **self.overrides}
        return self.by_lang[lang]

    def probabilities(self, texts: list[str], masks: list[np.ndarray | None]) -> list[np.ndarray]:
        p: SegmentParams = self.params  # type: ignore[assignment]
        if p.backend == "bundled":
            return self.model.predict_proba(texts, masks)
        return [np.asarray(x, dtype=np.float32) for x in self.model.predict_proba(texts)]

    def spans(self, texts: list[str], langs: list[str | None]) -> list[list]:
        p: SegmentParams = self.params  # type: ignore[assignment]
        out: list[list] = []
        if p.backend == "rules":
            for text, lang in zip(texts, langs):
                sents = list(self.model.segment(lang or p.language, text)) if text.strip() else []
                ends, pos = [], 0
                for s in sents:
                    k = text.find(s.rstrip(), pos) if s.strip() else -1
                    if k >= 0:
                        pos = k + len(s.rstrip())
                        ends.append(pos - 1)
                probs = np.zeros(len(text), dtype=np.float32)
                probs[ends] = 1.0
                out.append(fit_lengths(text, spans_from_boundaries(text, ends, probs), probs, p.max_length,
                                       p.min_length))
            return out
        rules = p.backend == "bundled" and p.rule_signal
        for i in range(0, len(texts), p.batch_size):
            chunk, chunk_langs = texts[i:i + p.batch_size], langs[i:i + p.batch_size]
            kinds = [text_kind(t) for t in chunk]
            masks = rule_masks(chunk, chunk_langs, rules, kinds)
            for text, lang, kind, probs, mask in zip(chunk, chunk_langs, kinds, self.probabilities(chunk, masks),
                                                     masks):
                ends = sentence_ends(text, probs, self.thresholds(lang), mask, kind)
                spans = spans_from_boundaries(text, ends, probs)
                out.append(fit_lengths(text, spans, probs, p.max_length, p.min_length))
        return out

    def process(self, table: pa.Table) -> pa.Table:
        texts = [t or "" for t in table.column("text").to_pylist()]
        langs: list[str | None] = [None] * len(texts)
        if "metadata" in table.column_names:
            langs = [orjson.loads(m).get("language") if m else None for m in table.column("metadata").to_pylist()]
        spans = self.spans(texts, langs)
        table = set_column(table, "segment__sentences__spans", pa.array(spans, SPANS))
        return set_column(table, "segment__sentences__count", pa.array([len(s) for s in spans], pa.int32()))


def load_sat(model: str, tokenizer: str | None = None):
    """A wtpsplit SaT model from a hub name or a local directory, with an error that says what to do offline."""
    try:
        from wtpsplit import SaT  # type: ignore[import-not-found]
    except ImportError:
        try:
            from wtpsplit_lite import SaT  # type: ignore[import-not-found,no-redef]
        except ImportError as e:
            raise RuntimeError("segment backend `sat` needs wtpsplit: `pip install wtpsplit-lite` (ONNX) or "
                               "`pip install wtpsplit`") from e
    local = os.path.isdir(model)
    if not local and os.path.sep in model:
        raise FileNotFoundError(f"segment: SaT model directory {model!r} does not exist")
    if tokenizer is None and local and os.path.exists(os.path.join(model, "tokenizer.json")):
        tokenizer = model
    kwargs = {"tokenizer_name_or_path": tokenizer} if tokenizer else {}
    try:
        return SaT(model, **kwargs)
    except Exception as e:  # hub offline, missing files: name the two ways to provide weights
        raise RuntimeError(
            f"segment: could not load SaT model {model!r} ({type(e).__name__}: {str(e)[:300]}). SaT weights are "
            "not on PyPI: on a machine with hub access use a name such as `sat-3l-sm` (downloaded to the HF "
            "cache), or copy a model folder (model_optimized.onnx, config.json) and the xlm-roberta-base tokenizer "
            "files and set `model:` (and `sat_tokenizer:`) to those directories. The default `backend: bundled` "
            "needs no download.") from e
