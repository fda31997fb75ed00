"""The `vllm` rephrase backend generating for real: vLLM's CPU build (`make vllm-cpu`, its own environment), the
bundled SmolLM2-135M-Instruct, through the engine code a GPU worker runs (operators/rephrase/vllm_engine.py:
engine arguments, chat template, sampling, the guards as a vLLM logits processor) and the operator's checks.

The environment is built once (about 3 minutes from the package registry, 3.5 GB) by the same make target a user
runs; each test that loads the engine pays ~20 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ENGLISH, read_zst_jsonl, write_jsonl
from curate import schema
from curate.config import parse_config
from curate.runner import run_pipeline
from operators.rephrase.backends import VLLM_CPU_PYTHON, VLLMBackend
from operators.rephrase.operator import Rephrase, RephraseParams
from test_rephrase import rows

REPO = Path(__file__).resolve().parents[1]
WRAP_REASONS = {"wrap_empty", "wrap_truncated", "wrap_copy", "wrap_refusal", "wrap_bad_format", "wrap_off_task",
                "wrap_new_numbers"}


@pytest.fixture(scope="module")
def vllm_env() -> str:
    subprocess.run(["make", "-s", "vllm-cpu"], cwd=REPO, check=True)
    assert VLLM_CPU_PYTHON.exists()
    return str(VLLM_CPU_PYTHON)


def _docs(out: Path) -> list[dict]:
    return sorted((x for f in (out / "documents" / "web").glob("*.jsonl.gz") for x in read_zst_jsonl(f)),
                  key=lambda x: x["id"])


def test_pipeline_generates_with_vllm_checked_and_deterministic(vllm_env, ray_session, tmp_path, monkeypatch):
    """Through the pipeline (a Ray actor starts the engine in vLLM's environment): every synthetic document is
    made, checked and counted as with the transformers backend, greedy output is byte-identical across runs, and
    it is the transformers backend's text (both float32 with the same guards), but for near ties."""
    monkeypatch.setenv("CURATE_TORCH_THREADS", "2")
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", [{"id": f"x{i}", "text": " ".join(ENGLISH[i:i + 3])} for i in range(6)])
    step = {"name": "rephrase", "backend": "vllm", "styles": ["easy", "medium", "qa"], "chunk_tokens": 80,
            "max_new_tokens": 60}
    cfg = parse_config({"input": {"paths": [str(d)]}, "output": {"added": "2026-01-01T00:00:00Z"},
                        "steps": [step]})
    runs = []
    for k in range(2):
        stats = run_pipeline(cfg, str(tmp_path / f"out{k}"), progress=False)
        s = next(x for x in stats["steps"] if x["step"] == "rephrase")
        assert stats["totals"]["balanced"] and s["created"] == 6
        assert set(s["dropped"]) <= WRAP_REASONS and s["out"] == 6 + 6 - sum(s["dropped"].values())
        runs.append(_docs(tmp_path / f"out{k}"))
    assert runs[0] == runs[1]
    synth = [x for x in runs[0] if "-wrap-" in x["id"]]
    assert len(synth) == 6 - sum(s["dropped"].values()) >= 2
    for x in synth:
        meta = x["metadata"]["wrap"]
        assert meta["backend"] == "vllm" and meta["model"] == "SmolLM2-135M-Instruct" and meta["new_tokens"] > 0
        assert x["text"].strip() and x["source"] == f"web-wrap-{meta['style']}"
    # the same rows through the transformers backend, in this process
    originals = [x for x in runs[0] if "-wrap-" not in x["id"]]
    tf = Rephrase(RephraseParams(**{k: v for k, v in step.items() if k != "name"} | {"backend": "transformers"}))
    tf.setup()
    table = rows([x["text"] for x in originals], [x["id"] for x in originals])
    made = {r["id"]: r["text"] for r in tf.process(table).slice(len(originals)).to_pylist()
            if r[schema.FATE] is None}
    # the same here (6 of 6; 59 of 64 in bench/rephrase.py --engines): float32 in other kernels can flip a near
    # tie on another CPU, so most, not all; a prompt, template or guard that differed would change nearly all
    same = sum(made.get(x["id"]) == x["text"] for x in synth)
    assert same >= max(2, len(synth) - 2), (same, len(synth))


def test_auto_finds_the_vllm_environment(vllm_env, monkeypatch):
    from operators.rephrase.backends import vllm_available

    monkeypatch.delenv("CURATE_VLLM_PYTHON", raising=False)
    assert vllm_available() and vllm_available(vllm_env) and not vllm_available(sys.executable + "-none")


def test_guards_run_inside_vllm(vllm_env):
    """The loop/copy bans and the length stop act in vLLM's engine: with them off, greedy SmolLM2 copies its
    input; with them on, no run of max_copy_ngram tokens of the input survives, and outputs end at a sentence."""
    from operators.rephrase.backends import Decoding

    b = VLLMBackend("bundled:SmolLM2-135M-Instruct", 1, 0, python=vllm_env)
    try:
        src = [" ".join(ENGLISH[i:i + 2]) for i in range(4)]
        prompts = [b.chat_prompt(f"Repeat this text exactly:\n\n{s}") for s in src]
        free = b.generate(prompts, [60] * 4, 0.0, 1.0, sources=src, decoding=Decoding())
        guarded = b.generate(prompts, [60] * 4, 0.0, 1.0, sources=src,
                             decoding=Decoding(no_repeat_ngram=6, max_copy_ngram=6, stop_after=(10,) * 4))
        assert b.device == "cpu"
        assert any(s.split()[:8] == g.text.split()[:8] for s, g in zip(src, free))  # unguarded, it copies
        for s, g in zip(src, guarded):
            words = s.split()
            assert g.text.strip() and not any(" ".join(words[i:i + 8]) in g.text for i in range(len(words) - 7))
        assert sum(g.finished for g in guarded) >= sum(g.finished for g in free)  # the stop ends them sooner
    finally:
        b.close()


def test_bad_setups_fail_in_one_line(vllm_env, tmp_path):
    # no vLLM in the named Python (this project's own environment has none)
    with pytest.raises(RuntimeError, match=r"^rephrase backend `vllm`.*No module named 'vllm'"):
        VLLMBackend("bundled:SmolLM2-135M-Instruct", 1, 0, python=sys.executable)
    # a model that does not fit: more context than the KV cache vLLM is given holds
    with pytest.raises(RuntimeError, match=r"^rephrase backend `vllm`.*(KV cache|max_model_len|context)"):
        VLLMBackend("bundled:SmolLM2-135M-Instruct", 1, 0, python=vllm_env, max_model_len=10_000_000)
    # a GPU asked for (Ray gave the worker one) where only the CPU build is installed
    from operators.rephrase.backends import EngineProcess

    with pytest.raises(RuntimeError, match="asks for a GPU"):
        EngineProcess(vllm_env, {"model": "x", "want_gpu": True})
    with pytest.raises(RuntimeError, match="not an executable Python"):
        VLLMBackend("bundled:SmolLM2-135M-Instruct", 1, 0, python=str(tmp_path / "nope"))


def test_engine_process_ends_with_its_worker():
    """kill -9 of the worker that started an engine process ends that process too (no orphan holding memory)."""
    code = ("import subprocess, sys, time; sys.path.insert(0, %r)\n"
            "from operators.rephrase.backends import _die_with_parent\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],\n"
            "                     preexec_fn=_die_with_parent)\n"
            "print(c.pid, flush=True); time.sleep(600)\n") % str(REPO)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, 9)
    pytest.fail("the engine's process outlived the worker that started it")
