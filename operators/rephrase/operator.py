"""rephrase: WRAP ("Rephrasing the Web", Maini et al. 2024): styled paraphrases of documents by a local LLM.

Each selected document is cut at sentence boundaries into chunks of at most ``chunk_tokens`` tokens (the
model's tokenizer; sentence spans from ``spans_attribute`` when a segmenter ran, else a punctuation/newline
rule), every chunk is rephrased in the document's style with the paper's instruction as the user turn inside
the model's own chat template, and the outputs are joined in order. The original passes through; the synthetic
document is a new row (id ``<id>-wrap-<style>``, source ``<source>-wrap-<style>``) whose metadata links the
original and records style, model, generation settings and the prompt's hash.

Which documents: a deterministic ``mix_ratio`` share of them (by id hash; 1.0 = one synthetic per real, the
paper's 1:1), each in one style drawn by id hash from ``styles``. Output checks, each a counted drop of the
synthetic document: ``wrap_empty``, ``wrap_truncated`` (a chunk hit ``max_new_tokens``), ``wrap_copy`` (more
than ``copy_threshold`` of its word 5-grams appear in the input), ``wrap_refusal``, ``wrap_bad_format`` (qa
style without Question:/Answer: pairs). Preambles ("Sure! Here is a paraphrase:") are stripped and counted.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from curate import schema
from curate.operator import BatchOperator, Params, mark
from operators.rephrase.backends import DEFAULT_MODEL, make_backend

STYLE_COL = f"{schema.STAT_PREFIX}rephrase__style"

PREAMBLE = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the questions. USER: ")
STYLES = {
    "easy": "For the following paragraph give me a paraphrase of the same using a very small vocabulary and "
            "extremely simple sentences that a toddler will understand:",
    "medium": "For the following paragraph give me a diverse paraphrase of the same in high quality English "
              "language as in sentences on Wikipedia:",
    "hard": "For the following paragraph give me a paraphrase of the same using very terse and abstruse language "
            "that only an erudite scholar will understand. Replace simple words and phrases with rare and complex "
            "ones:",
    "qa": 'Convert the following paragraph into a conversational format with multiple tags of "Question:" '
          'followed by "Answer:":',
}
_SENT = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_PREAMBLE_LINE = re.compile(r"^\s*(sure|certainly|of course|here is|here's|here are)\b[^\n]*:\s*\n+", re.I)
_REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|i cannot|i can't|as an ai)\b", re.I)


class RephraseParams(Params):
    styles: list[Literal["easy", "medium", "hard", "qa", "custom"]] = Field(
        ["medium"], description="Styles; each document gets one, drawn by id hash.")
    custom_prompt: str | None = Field(None, description="Instruction for the `custom` style (the text follows).")
    paper_preamble: bool = Field(False, description="Prefix the paper's Vicuna-style system line to the user turn.")
    backend: Literal["transformers", "openai", "vllm"] = Field("transformers", description="LLM engine.")
    model: str = Field(DEFAULT_MODEL, description="HF directory or .gguf (transformers), model name (openai, vllm).")
    chunk_tokens: int = Field(300, gt=0, description="Max tokens per chunk (the paper: ~300).")
    max_new_tokens: int | None = Field(None, gt=0, description="Per chunk; default 1.5 x the chunk's tokens.")
    temperature: float = Field(0.0, ge=0, description="0: greedy (same input, same output).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling when temperature > 0.")
    seed: int = Field(0, description="Sampling seed.")
    batch_size: int = Field(16, ge=1, description="Chunks per generate call (transformers).")
    mix_ratio: float = Field(1.0, ge=0, le=1, description="Share of documents rephrased (synthetic : real).")
    copy_threshold: float = Field(0.8, gt=0, le=1, description="Output 5-gram overlap with the input above which "
                                  "the output counts as a copy.")
    spans_attribute: str | None = Field(None, description="Sentence span attribute for chunking (a segmenter's).")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://host:8000")
    api_key_env: str | None = Field(None, description="openai: environment variable holding the API key.")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight.")
    timeout_s: float = Field(120.0, gt=0, description="openai: per-request timeout.")
    max_retries: int = Field(4, ge=0, description="openai: retries with exponential backoff.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs per model replica.")

    @model_validator(mode="after")
    def _custom(self) -> "RephraseParams":
        if "custom" in self.styles and not self.custom_prompt:
            raise ValueError("style `custom` needs custom_prompt")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend `openai` needs base_url")
        if self.backend != "transformers" and self.model == DEFAULT_MODEL:
            raise ValueError(f"backend `{self.backend}` needs `model` (a name the server or vLLM knows)")
        return self


def _u(s: str) -> float:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") / 2**64


def chunk_text(text: str, count, limit: int, spans: list | None = None) -> list[str]:
    """Greedy chunks of whole sentences with at most `limit` tokens (a sentence longer than that alone)."""
    if spans:
        bounds = sorted({0, *(int(s[1]) for s in spans if 0 < int(s[1]) < len(text)), len(text)})
        sents = [text[a:b] for a, b in zip(bounds, bounds[1:]) if text[a:b].strip()]
    else:
        sents = [s for s in _SENT.split(text) if s and s.strip()]
    if not sents:
        return []
    sizes = count(sents)
    chunks, cur, n = [], [], 0
    for sent, k in zip(sents, sizes):
        if cur and n + k > limit:
            chunks.append(" ".join(x.strip() for x in cur))
            cur, n = [], 0
        cur.append(sent)
        n += k
    if cur:
        chunks.append(" ".join(x.strip() for x in cur))
    return chunks


def _grams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + n]) for i in range(max(0, len(w) - n + 1))}


def copy_share(output: str, source: str) -> float:
    out = _grams(output)
    return len(out & _grams(source)) / len(out) if out else 0.0


class Rephrase(BatchOperator):
    """WRAP rephrasing: styled synthetic documents from a batched local (or served) LLM."""

    name = "rephrase"
    Params = RephraseParams
    default_compute = "actors"  # the model loads once per actor
    attribute_params = ("spans_attribute",)
    # the style of a synthetic document, for the stats parquet (dashboards count synthetic documents by style)
    outputs = {STYLE_COL: pa.string()}

    def setup(self) -> None:
        self.backend = make_backend(self.params)

    def instruction(self, style: str) -> str:
        p: RephraseParams = self.params  # type: ignore[assignment]
        text = p.custom_prompt if style == "custom" else STYLES[style]
        return (PREAMBLE if p.paper_preamble else "") + text

    def process(self, table: pa.Table) -> pa.Table:
        p: RephraseParams = self.params  # type: ignore[assignment]
        b = self.backend
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        spans = table.column(p.spans_attribute).to_pylist() if p.spans_attribute else [None] * len(ids)
        jobs = []  # (row, style, chunks)
        for i, (did, text) in enumerate(zip(ids, texts)):
            if not text or not text.strip() or _u("mix:" + did) >= p.mix_ratio:
                continue
            style = p.styles[int(_u("style:" + did) * len(p.styles))]
            jobs.append((i, style, chunk_text(text, b.count, p.chunk_tokens, spans[i])))
        prompts, limits, owner = [], [], []
        for j, (_, style, chunks) in enumerate(jobs):
            for c in chunks:
                prompts.append(b.chat_prompt(f"{self.instruction(style)}\n\n{c}"))
                limits.append(p.max_new_tokens or max(16, int(1.5 * b.count([c])[0])))
                owner.append(j)
        gens = b.generate(prompts, limits, p.temperature, p.top_p) if prompts else []
        per_job: list[list] = [[] for _ in jobs]
        for j, g in zip(owner, gens):
            per_job[j].append(g)
        new_rows, fates = [], []
        for (i, style, chunks), outs in zip(jobs, per_job):
            row, fate = self._synthetic(table, i, style, chunks, outs)
            new_rows.append(row)
            fates.append(fate)
        table = schema.conform(table)
        table = table.append_column(STYLE_COL, pa.nulls(table.num_rows, pa.string())) \
            if STYLE_COL not in table.column_names else table
        if not new_rows:
            return table
        synth = schema.conform(pa.Table.from_pylist(new_rows, schema=_row_schema(table)))
        for reason in sorted({f for f in fates if f}):
            synth = mark(synth, [f == reason for f in fates], schema.DROP, reason)
        return pa.concat_tables([table, synth], promote_options="default")

    def _synthetic(self, table: pa.Table, i: int, style: str, chunks: list[str], outs: list) -> tuple[dict, str | None]:
        p: RephraseParams = self.params  # type: ignore[assignment]
        stripped = 0
        parts = []
        fate = None
        for c, g in zip(chunks, outs):
            text = g.text
            if _PREAMBLE_LINE.match(text):
                text = _PREAMBLE_LINE.sub("", text, count=1)
                stripped += 1
            parts.append(text.strip())
            if not g.finished:
                fate = fate or "wrap_truncated"
            if _REFUSAL.match(text):
                fate = fate or "wrap_refusal"
        joined = "\n\n".join(x for x in parts if x)
        source_text = " ".join(chunks)
        if not joined:
            fate = "wrap_empty"
        elif style == "qa" and not re.search(r"Question:.*?Answer:", joined, re.S):
            fate = fate or "wrap_bad_format"
        share = copy_share(joined, source_text)
        if joined and share > p.copy_threshold:
            fate = fate or "wrap_copy"
        base = {c: table.column(c)[i].as_py() for c in ("id", "source", "created", schema.FILE, schema.ORD)}
        prompt_hash = hashlib.sha256(self.instruction(style).encode()).hexdigest()[:16]
        meta = {"wrap": {"original_id": base["id"], "style": style, "model": self.backend.name,
                         "backend": p.backend, "temperature": p.temperature, "top_p": p.top_p, "seed": p.seed,
                         "chunk_tokens": p.chunk_tokens, "chunks": len(chunks), "prompt_sha256": prompt_hash,
                         "copy_share": round(share, 4), "preambles_stripped": stripped,
                         "new_tokens": sum(g.new_tokens for g in outs)}}
        row = {"id": f"{base['id']}-wrap-{style}", "text": joined,
               "source": f"{base['source'] or 'web'}-wrap-{style}", "created": base["created"],
               "metadata": json.dumps(meta, ensure_ascii=False, sort_keys=True),
               schema.FILE: base[schema.FILE], schema.ORD: base[schema.ORD], STYLE_COL: style}
        return row, fate


def _row_schema(table: pa.Table) -> pa.Schema:
    return pa.schema([pa.field(c, table.schema.field(c).type) for c in
                      ("id", "text", "source", "created", "metadata", schema.FILE, schema.ORD)]
                     + [pa.field(STYLE_COL, pa.string())])
