"""The decoding guards of `rephrase`, one per output row, in plain Python so that every engine runs the same rule:
the transformers backend calls them from a ``LogitsProcessor`` over the batch (backends.NgramGuard), the vLLM
backend from a per-request logits processor inside the engine (vllm_guard.CurateGuard). Switching engines then
does not change which tokens are banned, only the arithmetic that scores the rest.

Measured on the sample (bench/rephrase.py): without the guards SmolLM2-135M ran 17 of 30 chunks to
``max_new_tokens``, most in loops such as one list line repeated, and most of the rest copied the input.
"""

from __future__ import annotations

from collections.abc import Sequence


def ngram_table(ids: Sequence[int], n: int) -> dict[tuple[int, ...], set[int]]:
    """(n-1)-token prefix -> the tokens that follow it somewhere in ``ids``."""
    t: dict[tuple[int, ...], set[int]] = {}
    for i in range(len(ids) - n + 1):
        t.setdefault(tuple(ids[i:i + n - 1]), set()).add(ids[i + n - 1])
    return t


def sentence_enders(tok) -> frozenset[int]:
    """Token ids of a Hugging Face tokenizer whose text ends a sentence or a line (the stop's `enders`; ~0.3 s
    over a 49K vocabulary, so each backend computes it once)."""
    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    ends = [tok.convert_tokens_to_string([t]).rstrip(" ") if t else "" for t in tokens]
    return frozenset(i for i, e in enumerate(ends) if e and e[-1] in ".!?\n")


class RowGuard:
    """The guards of one output row:

    * loop guard: no n-gram of ``loop_n`` tokens twice in the row's own output (transformers'
      ``no_repeat_ngram_size`` would also ban every n-gram of the prompt, i.e. every entity name in the input);
    * copy guard: no run of ``copy_n`` tokens taken verbatim from the row's source text, so the model must leave
      the input after ``copy_n - 1`` tokens (names and numbers are shorter and stay possible);
    * stop: past ``stop_after`` new tokens, the first sentence end (a token in ``enders``) closes the row (a
      paraphrase is about as long as its input; a small model rambles on past the end of it instead).

    ``step(output)`` takes the row's whole output so far and returns the tokens banned next and whether the row
    must end now. It reads only the tokens added since its last call, so the cost per step is constant and a
    caller that skips a step (or repeats one) still gets the same answer. The end token is never banned."""

    __slots__ = ("loop_n", "copy_n", "eos", "stop_after", "enders", "copy", "seen", "done")

    def __init__(self, source: Sequence[int] | None, loop_n: int, copy_n: int, eos: int, stop_after: int = 0,
                 enders: frozenset[int] | set[int] = frozenset()):
        self.loop_n, self.copy_n, self.eos = loop_n, copy_n, eos
        self.stop_after, self.enders = stop_after, enders
        self.copy = ngram_table(source, copy_n) if source and copy_n else None
        self.seen: dict[tuple[int, ...], set[int]] = {}
        self.done = 0  # output tokens whose n-grams are recorded in `seen`

    def step(self, output: Sequence[int]) -> tuple[set[int], bool]:
        n = len(output)
        if self.loop_n:
            for end in range(max(self.loop_n, self.done + 1), n + 1):  # the n-grams completed since last call
                g = output[end - self.loop_n:end]
                self.seen.setdefault(tuple(g[:-1]), set()).add(g[-1])
        self.done = max(self.done, n)
        banned: set[int] = set()
        if self.loop_n and n >= self.loop_n - 1:
            banned |= self.seen.get(tuple(output[n - self.loop_n + 1:]), set())
        if self.copy and n >= self.copy_n - 1:
            banned |= self.copy.get(tuple(output[n - self.copy_n + 1:]), set())
        banned.discard(self.eos)
        stop = bool(self.stop_after and n >= self.stop_after and output[-1] in self.enders)
        return banned, stop
