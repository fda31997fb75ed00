"""The tokenizer as a ``tokenizer.json`` beside the token files, loadable by the `tokenizers` the dolma toolkit
pins (0.15 to 0.19.1), so `dolma tokens` and a trainer can re-create curate's ids from the output alone.

Two conversions:

* a tokenizer.json (``hf:``/``model:`` specs) is written as the older format: BPE merges as ``"a b"`` strings
  (tokenizers >= 0.20 saves them as pairs, which 0.19 rejects). Byte-level vocabularies never contain a plain
  space inside a token, so the string form is unambiguous; a vocabulary that does is refused, not mangled.
* a tiktoken encoding becomes a byte-level BPE: every token's bytes in the GPT-2 byte-to-character alphabet, the
  encoding's split pattern as the pre-tokenizer, merges derived from the ranks (a token of rank r is the merge of
  two lower-ranked tokens that spell it, in rank order) and ``ignore_merges`` (a piece that is itself a token is
  that token, as tiktoken decides), its special tokens as added tokens with their ids. The ids are identical to
  tiktoken's (tests/test_dolma_toolkit.py encodes the sample corpus both ways).
"""

from __future__ import annotations

import json
import re
from typing import Any

from operators.shard.tokenizers import Tokenizer


def tokenizer_json(tok: Tokenizer) -> bytes:
    """The bytes of a tokenizers-0.19-loadable tokenizer.json that encodes exactly as ``tok``."""
    if tok._tk is not None:
        data = _from_tiktoken(tok._tk)
    else:
        data = json.loads(tok._hf.to_str())
        model = data.get("model", {})
        merges = model.get("merges")
        if merges and isinstance(merges[0], list):
            if any(" " in a or " " in b for a, b in merges):
                raise ValueError(f"{tok.spec}: merges contain spaces; cannot write them in the tokenizers-0.19 form")
            model["merges"] = [f"{a} {b}" for a, b in merges]
    return (json.dumps(data, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n").encode("utf-8")


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (bytes that print as themselves keep their character;
    the rest move to code points from 256 up), which byte-level BPE vocabularies are written in."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def onig_pattern(pat: str) -> str:
    """tiktoken's split pattern in the Oniguruma dialect `tokenizers` compiles: a possessive interval
    ``X{1,3}+`` (Rust's fancy-regex / PCRE) reads in Oniguruma as ``(X{1,3})+`` (greedy, repeated), which would
    keep "0000" in one piece; an atomic group ``(?>X{1,3})`` means what tiktoken means. Other possessive forms
    (``?+ ++ *+``) mean the same in both."""
    return re.sub(r"(\\p\{\w+\}|\[[^\]]*\]|\\.|[^\\])(\{\d+(?:,\d*)?\})\+", r"(?>\1\2)", pat)


def _from_tiktoken(enc: Any) -> dict[str, Any]:
    ranks: dict[bytes, int] = enc._mergeable_ranks
    alpha = byte_alphabet()
    show = lambda b: "".join(alpha[x] for x in b)  # noqa: E731
    vocab = {show(b): r for b, r in ranks.items()}
    merges: list[str] = []
    for b, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(b) < 2:
            continue
        splits = sorted((ranks[b[:i]], ranks[b[i:]], i) for i in range(1, len(b))
                        if ranks.get(b[:i], r) < r and ranks.get(b[i:], r) < r)
        merges.extend(f"{show(b[:i])} {show(b[i:])}" for _, _, i in splits)
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for s, i in sorted(enc._special_tokens.items(), key=lambda kv: kv[1])]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": onig_pattern(enc._pat_str)}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }
