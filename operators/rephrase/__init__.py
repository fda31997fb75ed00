"""`rephrase`: WRAP synthetic rephrasings. backends.py: transformers (CPU), OpenAI-compatible servers, vLLM."""

from operators.rephrase.operator import Rephrase, RephraseParams  # noqa: F401
