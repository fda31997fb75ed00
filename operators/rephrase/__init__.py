"""`rephrase`: WRAP synthetic rephrasings. backends.py: transformers (CPU), OpenAI-compatible servers, vLLM.

The operator loads on first use (PEP 562): vllm_engine.py runs in vLLM's own environment, which imports this
package for the decoding guards but has neither pyarrow nor the framework.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("Rephrase", "RephraseParams"):
        from operators.rephrase import operator

        return getattr(operator, name)
    raise AttributeError(name)
