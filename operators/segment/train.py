"""`curate train segmenter`: rebuild the bundled SaT-style segmenter from sentence-segmented text (torch, CPU).

Recipe (after SaT): every epoch re-draws, per document, a corruption - clean, lower-cased, punctuation removed, or
both - and how sentences are joined (the document's own joiner, or a newline), so the model learns boundaries
from words and casing when punctuation is there and from words alone when it is not. Punctuated text carries the
rule splitter's (sentencex's) ends as an input, as at inference, except for a share shown without them (as with
``rule_signal: false``). Languages are balanced: each contributes between a floor (small languages repeat, with fresh
corruptions) and a cap of characters per epoch.
5% of the training documents (by position) are held out to pick the thresholds (per kind of text, and per
language where the held-out part is large enough); the dev split is never read here. ``exclude`` leaves languages
out entirely (bench/segment.py's leave-languages-out run). The result is a small .npz (float16 weights + JSON
config) that ``operators.segment.model.SegmenterModel`` runs with numpy alone, and a JSON record of data, hyper-
parameters, held-out scores, training time and the file's sha256 beside it. Same data, seed and settings give
the same file, byte for byte (tested)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from operators.segment import eval as se
from curate.files import file_sha256
from operators.segment.model import MODEL_FORMAT, N_CLASSES, PUNCTUATED, WORD_PAIRS, WORD_SLOTS, decide, \
    featurize, n_word_features, rule_mask, rule_masks, text_kind


@dataclass
class TrainConfig:
    vocab: int = 8192
    dim: int = 16
    kernel: int = 5
    channels: int = 64
    proj: int = 16  # the convolution's channels are projected to this many before the head gathers 20 offsets:
    # the head's first layer is most of the inference cost, and this cuts it ~3x for little accuracy
    offsets: list[int] = field(default_factory=lambda: [-20, -16, -12, -9, -7, -5, -4, -3, -2, -1, 0, 1, 2, 3,
                                                         4, 5, 7, 9, 12, 16])
    hidden: int = 128
    word_buckets: int = 1 << 17
    word_dim: int = 24
    word_slots: list[int] = field(default_factory=lambda: list(WORD_SLOTS))
    word_pairs: list[list[int]] = field(default_factory=lambda: [list(p) for p in WORD_PAIRS])
    dropout: float = 0.4  # on the head's input. The model scored 0.736 "both" F1 on documents it trained on
    # and 0.402 on held-out ones (dropout 0.2): it memorises words. 0.4 lifted held-out macro-F1 0.741 -> 0.751
    # (0.3 with word dropout 0.35: 0.749; 0.4 with 0.5: 0.751 but lower on clean and both)
    word_dropout: float = 0.15  # a word slot is blanked (bucket 0) with this probability, so casing/punctuation
    # and characters keep their weight instead of memorised words
    rule_dim: int = 8  # embedding of the rule splitter's opinion at a candidate (none / no / yes)
    p_no_rules: float = 0.15  # punctuated training text shown without the rule opinion (`rule_signal: false`)
    epochs: int = 20
    lr: float = 3e-3
    batch_chars: int = 32768
    chars_per_lang: int = 400_000  # per epoch, at most
    min_chars_per_lang: int = 120_000  # per epoch, at least: small languages are repeated (each time with a fresh
    max_repeat: int = 6  # corruption draw), but no more than this many times over
    p_corrupt: dict[str, float] = field(default_factory=lambda: {"clean": 0.3, "lower": 0.15, "nopunct": 0.2,
                                                                 "both": 0.35})
    p_newline_join: float = 0.1
    holdout_every: int = 20
    seed: int = 0
    threads: int = 2
    exclude: list[str] = field(default_factory=list)  # languages left out (the leave-languages-out evaluation)

    @property
    def margin(self) -> int:
        return max(abs(o) for o in self.offsets) + self.kernel // 2 + 1


def _net(cfg: TrainConfig):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(cfg.vocab, cfg.dim)
            self.emb_cls = nn.Embedding(N_CLASSES, cfg.dim)
            self.conv = nn.Conv1d(cfg.dim, cfg.channels, cfg.kernel, padding=cfg.kernel // 2)
            self.word_emb = nn.Embedding(cfg.word_buckets, cfg.word_dim) if cfg.word_buckets else None
            n_words = n_word_features(cfg.word_slots, cfg.word_pairs) * cfg.word_dim if cfg.word_buckets else 0
            self.rule_emb = nn.Embedding(3, cfg.rule_dim)
            self.proj = nn.Linear(cfg.channels, cfg.proj)
            self.fc1 = nn.Linear(len(cfg.offsets) * cfg.proj + n_words + cfg.rule_dim, cfg.hidden)
            self.fc2 = nn.Linear(cfg.hidden, 1)
            self.register_buffer("offsets", torch.tensor(cfg.offsets, dtype=torch.long))
            # Dropout masks are slices of one pre-drawn bank: torch's CPU bernoulli over the head's input (millions
            # of values a step) was 45% of the training time.
            g = torch.Generator().manual_seed(cfg.seed)
            self.register_buffer("bank", (torch.rand(1 << 24, generator=g) >= cfg.dropout) / (1 - cfg.dropout),
                                 persistent=False)
            self.gen = g

        def _drop(self, f):
            if not self.training or not cfg.dropout:
                return f
            n = f.numel()
            if n > len(self.bank):  # (a batch far beyond batch_chars) goes without
                return f
            start = int(torch.randint(0, len(self.bank) - n, (1,), generator=self.gen)) if n < len(self.bank) else 0
            return f * self.bank[start:start + n].view_as(f)

        def forward(self, ids, cls, cand, words, rule):
            x = self.emb(ids) + self.emb_cls(cls)
            h = self.proj(torch.relu(self.conv(x.T.unsqueeze(0)))[0].T)
            idx = (cand[:, None] + self.offsets[None, :]).reshape(-1)
            f = h.index_select(0, idx).reshape(len(cand), -1)
            if self.word_emb is not None:
                if self.training and cfg.word_dropout:
                    words = words * (torch.rand(words.shape, generator=self.gen) >= cfg.word_dropout)
                f = torch.cat([f, self.word_emb(words).reshape(len(cand), -1)], dim=1)
            # the rule input goes past dropout: it is one clean signal, dropped whole per text (p_no_rules) instead
            f = torch.cat([self._drop(f), self.rule_emb(rule)], dim=1)
            return self.fc2(torch.relu(self.fc1(f)))[:, 0]

    return Net()


def _examples(docs: list[se.Doc], cfg: TrainConfig, rng: random.Random) -> list[tuple[str, set[int], object]]:
    """(text, gold ends, rule mask or None) per document: a fresh corruption, joiner and rule opinion. The rule mask
    is what inference computes (``rule_masks``: punctuated text only), except that ``p_no_rules`` of the punctuated
    texts go without it, as with ``rule_signal: false`` at inference."""
    hows, weights = zip(*cfg.p_corrupt.items())
    out = []
    for d in docs:
        how = rng.choices(hows, weights)[0]
        joiner = "\n" if rng.random() < cfg.p_newline_join else None
        text, gold = se.build(d, how, joiner)
        with_rules = rng.random() >= cfg.p_no_rules
        if text:
            mask = rule_mask(text, d.lang) if with_rules and text_kind(text) in PUNCTUATED else None
            out.append((text, gold | {len(text) - 1}, mask))
    return out


def _batches(examples: list[tuple[str, set[int], object]], cfg: TrainConfig):
    batch, size = [], 0
    for ex in examples:
        batch.append(ex)
        size += len(ex[0])
        if size >= cfg.batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _tensors(batch, cfg: TrainConfig):
    import torch

    packed = featurize([t for t, _, _ in batch], cfg.vocab, cfg.margin, cfg.word_buckets, tuple(cfg.word_slots),
                       tuple(tuple(p) for p in cfg.word_pairs), [m for _, _, m in batch])
    labels = np.zeros(len(packed.ids), dtype=np.float32)
    for s, (_, gold, _) in zip(packed.starts.tolist(), batch):
        labels[[s + g for g in gold]] = 1.0
    cand = packed.candidates
    return (torch.from_numpy(packed.ids), torch.from_numpy(packed.cls.astype(np.int64)),
            torch.from_numpy(cand), torch.from_numpy(packed.words), torch.from_numpy(packed.rule),
            torch.from_numpy(labels[cand]))


def _draw(train: dict[str, list[se.Doc]], cfg: TrainConfig, rng: random.Random) -> list[se.Doc]:
    """One epoch's documents: up to ``chars_per_lang`` characters of each language, and at least
    ``min_chars_per_lang`` (small languages cycle through their documents again, at most ``max_repeat`` times), so
    English and Portuguese do not drown the 50 smaller languages and a language with 50 sentences is still seen."""
    picked = []
    for lang in sorted(train):
        docs = train[lang][:]
        total = sum(_chars(d) for d in docs)
        want = min(cfg.chars_per_lang, max(total, min(cfg.min_chars_per_lang, cfg.max_repeat * total)))
        n = 0
        while n < want and docs:
            rng.shuffle(docs)
            for d in docs:
                if n >= want:
                    break
                picked.append(d)
                n += _chars(d)
    rng.shuffle(picked)
    return picked


def _chars(d: se.Doc) -> int:
    return sum(len(s) + 1 for s in d.sentences)


def export(net, cfg: TrainConfig, thresholds: dict[str, float], by_lang: dict[str, dict[str, float]],
           path: Path) -> None:
    sd = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    config = {"format": MODEL_FORMAT, "vocab": cfg.vocab, "dim": cfg.dim, "kernel": cfg.kernel,
              "channels": cfg.channels, "proj": cfg.proj, "offsets": cfg.offsets, "hidden": cfg.hidden,
              "margin": cfg.margin,
              "word_buckets": cfg.word_buckets, "word_dim": cfg.word_dim, "word_slots": cfg.word_slots,
              "word_pairs": cfg.word_pairs, "rule_dim": cfg.rule_dim,
              "thresholds": thresholds, "language_thresholds": by_lang}
    arrays = {"emb": sd["emb.weight"], "emb_cls": sd["emb_cls.weight"], "conv_w": sd["conv.weight"],
              "conv_b": sd["conv.bias"], "proj_w": sd["proj.weight"], "proj_b": sd["proj.bias"],
              "fc1_w": sd["fc1.weight"], "fc1_b": sd["fc1.bias"],
              "fc2_w": sd["fc2.weight"], "fc2_b": sd["fc2.bias"], "rule_emb": sd["rule_emb.weight"]}
    if cfg.word_buckets:
        arrays["word_emb"] = sd["word_emb.weight"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, config=np.frombuffer(json.dumps(config, sort_keys=True).encode(), dtype=np.uint8),
                        **{k: v.astype(np.float16) for k, v in arrays.items()})
    tmp.replace(path)


THRESHOLD_GRID = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
                  0.75, 0.8, 0.85, 0.9, 0.95)


def choose_thresholds(model, held: dict[str, list[se.Doc]]) -> tuple[dict[str, float], dict, dict]:
    """The model's thresholds (``operators.segment.model.THRESHOLD_KEYS``) maximising macro-F1 over languages and the
    four corruptions on held-out training documents, by coordinate ascent over a grid: first one per kind of text
    (``text_kind``: clean, lower-cased, unpunctuated, both; a text's kind is detected, not known, so every cell is
    rescored), then the pairs used with the rule signal on punctuated text. Then per language, where its held-out
    part has enough boundaries to trust, the same search over that language's cells, kept only where it gains:
    once casing and punctuation are gone, probabilities are calibrated differently per language, and the operator
    knows the language from langid (metadata.language)."""
    from operators.segment.model import KINDS, THRESHOLD_KEYS

    cells = []  # (how, lang, [(gold, probs without rules, kind, last, rule mask, probs with the rule input)])
    for how in se.CORRUPTIONS:
        for lang, docs in held.items():
            built = [b for b in (se.build(d, how) for d in docs) if b[0]]
            texts = [t for t, _ in built]
            kinds = [text_kind(t) for t in texts]
            masks = rule_masks(texts, [lang] * len(texts), kinds=kinds)
            bare, ruled = model.predict_proba(texts), model.predict_proba(texts, masks)
            cells.append((how, lang, [(g, p, k, len(t) - 1, m, pr)
                                      for (t, g), k, p, m, pr in zip(built, kinds, bare, masks, ruled)]))
    rule_keys = [k for k in THRESHOLD_KEYS if k not in KINDS]

    def search(th: dict[str, float], keys, mine, rules: bool, prior: dict[str, float]) -> dict[str, float]:
        def score(t: dict[str, float]) -> float:
            return float(np.mean([_cell_f1(docs, t, rules) for _, _, docs in mine]))

        th = dict(th)
        for _ in range(2):
            for k in keys:
                th[k] = max(THRESHOLD_GRID, key=lambda t: (score({**th, k: t}), -abs(t - prior[k])))
        return th

    half = {k: 0.5 for k in THRESHOLD_KEYS}
    th = search(half, KINDS, cells, False, half)
    th = search({**th, **{k: th[k.split("_")[0]] for k in rule_keys}}, rule_keys, cells, True, half)
    by_lang: dict[str, dict[str, float]] = {}
    for lang in sorted(held):
        mine = [c for c in cells if c[1] == lang]
        if sum(len(d[0]) for how, _, docs in mine if how == "clean" for d in docs) < MIN_LANGUAGE_BOUNDARIES:
            continue
        own = {}
        for keys, rules in ((KINDS, False), (rule_keys, True)):
            new = search(th, keys, mine, rules, th)
            gain = (np.mean([_cell_f1(docs, new, rules) for _, _, docs in mine])
                    - np.mean([_cell_f1(docs, th, rules) for _, _, docs in mine]))
            if gain > 0.01:
                own.update({k: new[k] for k in keys if new[k] != th[k]})
        if own:
            by_lang[lang] = own
    record = {}
    for rules in (True, False):
        best = {(how, lang): _cell_f1(docs, {**th, **by_lang.get(lang, {})}, rules) for how, lang, docs in cells}
        per = {how: round(float(np.mean([v for (h, _), v in best.items() if h == how])), 4) for how in se.CORRUPTIONS}
        record["with_rules" if rules else "model_only"] = {"macro_f1": round(float(np.mean(list(best.values()))), 4),
                                                           "by_corruption": per}
    return th, by_lang, record


MIN_LANGUAGE_BOUNDARIES = 40  # held-out gold boundaries a language needs for thresholds of its own


def _cell_f1(docs, th: dict[str, float], rules: bool) -> float:
    prf = se.PRF()
    for gold, p, kind, last, mask, p_ruled in docs:
        ends = decide(p_ruled, kind, th, mask) if rules else decide(p, kind, th)
        prf.add(gold, set(np.flatnonzero(ends).tolist()) - {last})
    return prf.f1


def train(data_dir: str | Path, out: str | Path, cfg: TrainConfig | None = None, log=print) -> dict:
    import torch

    from operators.segment.model import SegmenterModel

    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    data_dir, out = Path(data_dir), Path(out)
    if data_dir.name == "train" or not (data_dir / "train").is_dir():
        raise ValueError(f"{data_dir}: expected a folder with train/<lang>.jsonl (the dev/ split is never read)")
    split = {k: v for k, v in se.load_split(data_dir, "train").items() if k not in set(cfg.exclude)}
    train_docs = {k: [d for i, d in enumerate(v) if i % cfg.holdout_every] for k, v in split.items()}
    held = {k: [d for i, d in enumerate(v) if i % cfg.holdout_every == 0] for k, v in split.items()}
    net = _net(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    t0 = time.time()
    step = 0
    total_steps = None
    for epoch in range(cfg.epochs):
        examples = _examples(_draw(train_docs, cfg, rng), cfg, rng)
        batches = list(_batches(examples, cfg))
        if total_steps is None:
            total_steps = len(batches) * cfg.epochs
        losses = []
        for batch in batches:
            lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps))
            for g in opt.param_groups:
                g["lr"] = lr
            ids, cls, cand, words, rule, y = _tensors(batch, cfg)
            logits = net(ids, cls, cand, words, rule)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f} ({time.time() - t0:.0f} s)")
    train_s = time.time() - t0
    net.eval()
    from operators.segment.model import THRESHOLD_KEYS

    export(net, cfg, {k: 0.5 for k in THRESHOLD_KEYS}, {}, out)
    thresholds, by_lang, held_scores = choose_thresholds(SegmenterModel(out), held)
    export(net, cfg, thresholds, by_lang, out)
    n_chars = {k: sum(sum(len(s) for s in d.sentences) for d in v) for k, v in train_docs.items()}
    record = {
        "model": out.name, "sha256": file_sha256(str(out)), "bytes": out.stat().st_size,
        "thresholds": thresholds, "language_thresholds": by_lang, "heldout": held_scores,
        "train_seconds": round(train_s, 1),
        "steps": total_steps, "hyperparameters": asdict(cfg),
        "data": {"source": str(data_dir / "train"), "languages": sorted(train_docs),
                 "train_documents": sum(len(v) for v in train_docs.values()),
                 "heldout_documents": sum(len(v) for v in held.values()), "train_chars": n_chars},
        "torch": torch.__version__,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    log(f"thresholds {thresholds} ({len(by_lang)} languages with their own); held-out macro-F1 "
        f"{held_scores['with_rules']} (model alone: {held_scores['model_only']})")
    return record
