"""`curate train segmenter`: rebuild the bundled SaT-style segmenter from sentence-segmented text (torch, CPU).

Recipe (after SaT): every epoch re-draws, per document, a corruption - clean, lower-cased, punctuation removed, or
both - and how sentences are joined (the document's own joiner, or a newline), so the model learns boundaries
from words and casing when punctuation is there and from words alone when it is not. Languages are balanced by
capping the characters drawn from each per epoch. 5% of the training documents (by position) are held out to
pick the decision threshold; the dev split is never read here. The result is a small .npz (float16 weights +
JSON config) that ``operators.segment.model.SegmenterModel`` runs with numpy alone, and a JSON record of data, hyper-
parameters, held-out scores, training time and the file's sha256 beside it.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from operators.segment import eval as se
from curate.files import file_sha256
from operators.segment.model import N_CLASSES, N_WORD_FEATURES, featurize


@dataclass
class TrainConfig:
    vocab: int = 8192
    dim: int = 16
    kernel: int = 5
    channels: int = 48
    offsets: list[int] = field(default_factory=lambda: [-20, -16, -12, -9, -7, -5, -4, -3, -2, -1, 0, 1, 2, 3,
                                                         4, 5, 7, 9, 12, 16])
    hidden: int = 64
    word_buckets: int = 1 << 16
    word_dim: int = 32
    dropout: float = 0.2  # on the head's input
    word_dropout: float = 0.25  # a word slot is blanked (bucket 0) with this probability, so casing/punctuation
    # and characters keep their weight instead of memorised words
    epochs: int = 16
    lr: float = 3e-3
    batch_chars: int = 32768
    chars_per_lang: int = 600_000  # per epoch
    p_corrupt: dict[str, float] = field(default_factory=lambda: {"clean": 0.35, "lower": 0.15, "nopunct": 0.15,
                                                                 "both": 0.35})
    p_newline_join: float = 0.1
    holdout_every: int = 20
    seed: int = 0
    threads: int = 2

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
            n_words = N_WORD_FEATURES * cfg.word_dim if cfg.word_buckets else 0
            self.fc1 = nn.Linear(len(cfg.offsets) * cfg.channels + n_words, cfg.hidden)
            self.fc2 = nn.Linear(cfg.hidden, 1)
            self.drop = nn.Dropout(cfg.dropout)
            self.register_buffer("offsets", torch.tensor(cfg.offsets, dtype=torch.long))

        def forward(self, ids, cls, cand, words):
            x = self.emb(ids) + self.emb_cls(cls)
            h = torch.relu(self.conv(x.T.unsqueeze(0)))[0].T
            f = h[cand[:, None] + self.offsets[None, :]].reshape(len(cand), -1)
            if self.word_emb is not None:
                if self.training and cfg.word_dropout:
                    words = words * (torch.rand(words.shape) >= cfg.word_dropout)
                f = torch.cat([f, self.word_emb(words).reshape(len(cand), -1)], dim=1)
            return self.fc2(torch.relu(self.fc1(self.drop(f))))[:, 0]

    return Net()


def _examples(docs: list[se.Doc], cfg: TrainConfig, rng: random.Random) -> list[tuple[str, set[int]]]:
    hows, weights = zip(*cfg.p_corrupt.items())
    out = []
    for d in docs:
        how = rng.choices(hows, weights)[0]
        joiner = "\n" if rng.random() < cfg.p_newline_join else None
        text, gold = se.build(d, how, joiner)
        if text:
            out.append((text, gold | {len(text) - 1}))
    return out


def _batches(examples: list[tuple[str, set[int]]], cfg: TrainConfig):
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

    packed = featurize([t for t, _ in batch], cfg.vocab, cfg.margin, cfg.word_buckets)
    labels = np.zeros(len(packed.ids), dtype=np.float32)
    for s, (_, gold) in zip(packed.starts.tolist(), batch):
        labels[[s + g for g in gold]] = 1.0
    cand = packed.candidates
    return (torch.from_numpy(packed.ids), torch.from_numpy(packed.cls.astype(np.int64)),
            torch.from_numpy(cand), torch.from_numpy(packed.words), torch.from_numpy(labels[cand]))


def _draw(train: dict[str, list[se.Doc]], cfg: TrainConfig, rng: random.Random) -> list[se.Doc]:
    picked = []
    for lang in sorted(train):
        docs = train[lang][:]
        rng.shuffle(docs)
        n = 0
        for d in docs:
            if n >= cfg.chars_per_lang:
                break
            picked.append(d)
            n += sum(len(s) + 1 for s in d.sentences)
    rng.shuffle(picked)
    return picked


def export(net, cfg: TrainConfig, thresholds: tuple[float, float], path: Path) -> None:
    sd = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    config = {"format": "curate-segmenter/1", "vocab": cfg.vocab, "dim": cfg.dim, "kernel": cfg.kernel,
              "channels": cfg.channels, "offsets": cfg.offsets, "hidden": cfg.hidden, "margin": cfg.margin,
              "word_buckets": cfg.word_buckets, "word_dim": cfg.word_dim,
              "threshold": thresholds[0], "threshold_unpunctuated": thresholds[1]}
    arrays = {"emb": sd["emb.weight"], "emb_cls": sd["emb_cls.weight"], "conv_w": sd["conv.weight"],
              "conv_b": sd["conv.bias"], "fc1_w": sd["fc1.weight"], "fc1_b": sd["fc1.bias"],
              "fc2_w": sd["fc2.weight"], "fc2_b": sd["fc2.bias"]}
    if cfg.word_buckets:
        arrays["word_emb"] = sd["word_emb.weight"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, config=np.frombuffer(json.dumps(config, sort_keys=True).encode(), dtype=np.uint8),
                        **{k: v.astype(np.float16) for k, v in arrays.items()})
    tmp.replace(path)


def choose_threshold(model, held: dict[str, list[se.Doc]]) -> tuple[tuple[float, float], dict]:
    """Thresholds for punctuated and unpunctuated text (``operators.segment.model.is_punctuated``) maximising macro-F1
    over languages and the four corruptions on held-out training documents (coordinate ascent on a grid)."""
    from operators.segment.model import is_punctuated

    grid = [round(float(x), 3) for x in np.arange(0.05, 0.96, 0.05)]
    cells = []  # (how, lang, [(gold, probs, punctuated, last)])
    for how in se.CORRUPTIONS:
        for lang, docs in held.items():
            built = [b for b in (se.build(d, how) for d in docs) if b[0]]
            probs = model.predict_proba([t for t, _ in built])
            cells.append((how, lang, [(g, p, is_punctuated(t), len(t) - 1) for (t, g), p in zip(built, probs)]))

    def f1s(t_p: float, t_u: float) -> dict:
        out = {}
        for how, lang, docs in cells:
            prf = se.PRF()
            for gold, p, punct, last in docs:
                prf.add(gold, set(np.flatnonzero(p > (t_p if punct else t_u)).tolist()) - {last})
            out[(how, lang)] = prf.f1
        return out

    def macro(t_p: float, t_u: float) -> float:
        return float(np.mean(list(f1s(t_p, t_u).values())))

    t_p, t_u = 0.5, 0.5
    for _ in range(2):
        t_p = max(grid, key=lambda t: (macro(t, t_u), -abs(t - 0.5)))
        t_u = max(grid, key=lambda t: (macro(t_p, t), -abs(t - 0.5)))
    best = f1s(t_p, t_u)
    per = {how: round(float(np.mean([v for (h, _), v in best.items() if h == how])), 4) for how in se.CORRUPTIONS}
    return (t_p, t_u), {"macro_f1": round(float(np.mean(list(best.values()))), 4), "by_corruption": per}


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
    split = se.load_split(data_dir, "train")
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
            ids, cls, cand, words, y = _tensors(batch, cfg)
            logits = net(ids, cls, cand, words)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f} ({time.time() - t0:.0f} s)")
    train_s = time.time() - t0
    net.eval()
    export(net, cfg, (0.5, 0.5), out)
    thresholds, held_scores = choose_threshold(SegmenterModel(out), held)
    export(net, cfg, thresholds, out)
    n_chars = {k: sum(sum(len(s) for s in d.sentences) for d in v) for k, v in train_docs.items()}
    record = {
        "model": out.name, "sha256": file_sha256(str(out)), "bytes": out.stat().st_size,
        "threshold": thresholds[0], "threshold_unpunctuated": thresholds[1], "heldout": held_scores,
        "train_seconds": round(train_s, 1),
        "steps": total_steps, "hyperparameters": asdict(cfg),
        "data": {"source": str(data_dir / "train"), "languages": sorted(train_docs),
                 "train_documents": sum(len(v) for v in train_docs.values()),
                 "heldout_documents": sum(len(v) for v in held.values()), "train_chars": n_chars},
        "torch": torch.__version__,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    log(f"thresholds {thresholds}, held-out macro-F1 {held_scores['macro_f1']} {held_scores['by_corruption']}")
    return record
