"""guard.RowGuard inside vLLM's engine: a logits processor of vLLM's V1 interface (``AdapterLogitsProcessor``,
one per-request function over the request's output token ids), loaded at engine start (``LLM(...,
logits_processors=[CurateGuard])``) and switched on per request by ``SamplingParams.extra_args["curate_guard"]``
(source token ids, n-gram sizes, end token, stop length, sentence-end tokens). Requests without it pass
untouched, and the processor says it changes the argmax, so greedy decoding applies it.

Imports vLLM: load this module only where vLLM is installed (the engine process, vllm_engine.py).
"""

from __future__ import annotations

from typing import Any

from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from operators.rephrase.guard import RowGuard

KEY = "curate_guard"


class CurateGuard(AdapterLogitsProcessor):
    """Loop and copy n-gram bans and the length stop of the transformers backend, per vLLM request."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        g = (sampling_params.extra_args or {}).get(KEY)
        if g is not None and not (isinstance(g, dict) and {"loop_n", "copy_n", "eos"} <= g.keys()):
            raise ValueError(f"extra_args[{KEY!r}] needs loop_n, copy_n and eos")

    def is_argmax_invariant(self) -> bool:
        return False  # bans and forced ends change greedy choices

    def new_req_logits_processor(self, params: SamplingParams) -> Any:
        g = (params.extra_args or {}).get(KEY)
        if not g:
            return None
        row = RowGuard(g.get("source"), int(g["loop_n"]), int(g["copy_n"]), int(g["eos"]),
                       int(g.get("stop_after") or 0), frozenset(g.get("enders") or ()))
        eos = row.eos

        def apply(output_ids: list[int], logits):
            banned, stop = row.step(output_ids)
            if stop:
                logits[:] = float("-inf")
                logits[eos] = 0.0
            elif banned:
                logits[list(banned)] = float("-inf")
            return logits

        return apply
