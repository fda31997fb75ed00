"""A small SaT-style sentence segmenter: per-character boundary probabilities from the characters themselves.

Why this shape. SaT ("Segment any Text", Frohmann et al. 2024) predicts, for every character, the probability that
a sentence ends there, with limited lookahead, and is trained on text whose punctuation, casing and newlines were
removed, so it keeps working on ASR output, lower-cased forums and scraped lists. Its subword transformers do not
ship offline, and the pipeline needs >= 1 MB/s per CPU core. This model keeps the SaT recipe (character input,
limited lookahead, corruption-robust training, threshold on a probability) with a network sized for numpy:

* every character -> hashed embedding of its lower-cased code point + embedding of its Unicode class
  (upper/lower/caseless letter, digit, terminal/closing/other punctuation, space, newline, mark, no-space script);
* one convolution over all characters (character n-gram detectors), projected to a few channels per position;
* a two-layer head evaluated only at *candidate* characters: those followed by whitespace or the end of the text,
  terminal/closing punctuation, and every character of scripts written without spaces (Han, kana, Thai, ...).
  A sentence in a language written with spaces cannot end inside a word, so the other characters get
  probability 0 without computing anything; this is what makes the model fast. No candidate is followed by a
  combining mark, so no boundary ever cuts a grapheme. The head sees the projected convolution at 20 offsets and
  hashed embeddings of the five words before and the five after, plus pairs of neighbouring words: without
  casing and punctuation, words are the only evidence left.
* the rule splitter's opinion (sentencex, on punctuated text) at each candidate is an input of the head (format
  3): a hybrid in which the model learns where rules are right and where they are not.
* a threshold per kind of text (``text_kind``: punctuated or not, lower-cased or not) and, where held-out data
  supports it, per language (the operator reads langid's ``metadata.language``).

The receptive field is a fixed window of characters around each candidate (``RECEPTIVE``), so documents are
packed into one array with pad margins and processed in fixed-size chunks: linear time for a 5 MB document,
identical results however documents are batched. Training (torch) lives in ``operators.segment.train`` and uses
``featurize`` below, so training and inference see the same features.
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.files import file_sha256

# Unicode classes (small ids; 0 is padding between packed documents).
PAD, SPACE, NEWLINE, DIGIT, LOWER, UPPER, CASELESS, NOSPACE, MARK, TERMINAL, CLOSING, PUNCT, OTHER = range(13)
N_CLASSES = 13
TERMINALS = set(".!?。！？｡؟।॥…‼⁇⁈⁉;։።፧۔܀܁܂჻᙮᠃᠉⸮꓿꘎꘏꛳꛷﹒﹖﹗")
NEWLINES = set("\n\r\x0b\x0c\x85\u2028\u2029")
# Scripts written without spaces between words: every character is a possible sentence end.
NOSPACE_RANGES = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x0F00, 0x0FFF), (0x3040, 0x30FF),
                  (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FFFF), (0x31F0, 0x31FF))
MODEL_FORMAT = "curate-segmenter/3"
TABLE_SIZE = 0x30000  # code points above this get class OTHER / caseless handling by category below


@functools.lru_cache(maxsize=1)
def class_table() -> np.ndarray:
    """Class of every code point below TABLE_SIZE (built once per process from unicodedata, ~0.2 s)."""
    t = np.full(TABLE_SIZE, OTHER, dtype=np.uint8)
    for cp in range(TABLE_SIZE):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if ch in NEWLINES:
            c = NEWLINE
        elif cat == "Zs" or ch == "\t":
            c = SPACE
        elif ch in TERMINALS:
            c = TERMINAL
        elif cat in ("Pe", "Pf") or ch in "\"'»”’":
            c = CLOSING
        elif cat[0] == "P":
            c = PUNCT
        elif cat[0] == "M" or ch in "\u200c\u200d" or 0xFE00 <= cp <= 0xFE0F:
            c = MARK
        elif cat == "Nd" or cat[0] == "N":
            c = DIGIT
        elif any(a <= cp <= b for a, b in NOSPACE_RANGES) and cat[0] == "L":
            c = NOSPACE
        elif cat == "Ll":
            c = LOWER
        elif cat in ("Lu", "Lt"):
            c = UPPER
        elif cat[0] == "L":
            c = CASELESS
        else:
            c = OTHER
        t[cp] = c
    return t


def _codepoints(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _lower_same_length(text: str) -> str:
    """``text.lower()`` with one character per character (a few characters lower to two, e.g. 'İ')."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(ch.lower()[:1] or ch for ch in text)


@dataclass
class Packed:
    """Documents packed into one character array with ``margin`` pad characters around each."""

    ids: np.ndarray  # int64 hashed lower-cased code point per position
    cls: np.ndarray  # uint8 class per position
    starts: np.ndarray  # int64 start of each document in the packed array
    lengths: np.ndarray  # int64 characters per document
    candidates: np.ndarray  # int64 packed positions that may end a sentence
    words: np.ndarray  # int64 (candidates, n_word_features) hashed word buckets around each candidate; 0 = none
    rule: np.ndarray  # int64 per candidate: RULE_NONE (no rule opinion), RULE_NO, RULE_YES (sentencex ends here)


# Words around a candidate whose identity the head sees: five before (the one ending at the candidate included) and
# five after, plus hashed pairs of neighbouring words. Without punctuation and casing, words are most of what is
# left ("... to denver | show me ..."): a sentence-final verb form, a sentence-initial pronoun, and the transition
# between them. The layout is recorded in the model file, so a model is always run with the features it saw.
WORD_SLOTS = (-5, -4, -3, -2, -1, 0, 1, 2, 3, 4)
WORD_PAIRS = ((-1, 0), (-2, -1), (0, 1), (1, 2))
# The rule splitter's opinion at a candidate, an input of the model (format 3): none (unpunctuated text, or rules
# off), "no boundary here", "a boundary here".
RULE_NONE, RULE_NO, RULE_YES = 0, 1, 2
_M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)


def n_word_features(slots=WORD_SLOTS, pairs=WORD_PAIRS) -> int:
    return len(slots) + len(pairs)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(31)
    x *= _M2
    x ^= x >> np.uint64(29)
    return x


def _word_features(low: np.ndarray, cls: np.ndarray, doc: np.ndarray, cand: np.ndarray, buckets: int,
                   slots=WORD_SLOTS, pairs=WORD_PAIRS) -> np.ndarray:
    """Hashed lower-cased words around each candidate, vectorised: words are runs of letters/digits/marks; each
    character of a script without spaces is a word of its own. Slots outside the candidate's document are 0."""
    width = n_word_features(slots, pairs)
    nospace = cls == NOSPACE
    inword = (cls == LOWER) | (cls == UPPER) | (cls == CASELESS) | (cls == DIGIT) | (cls == MARK) | nospace
    prev_in = np.r_[False, inword[:-1]]
    prev_ns = np.r_[False, nospace[:-1]]
    start = inword & (~prev_in | nospace | prev_ns)
    cs = np.cumsum(start)
    starts = np.flatnonzero(start)
    if len(starts) == 0:
        return np.zeros((len(cand), width), dtype=np.int64)
    wid = cs - 1
    pos = np.arange(len(low), dtype=np.int64)
    off = pos - starts[np.maximum(wid, 0)]
    with np.errstate(over="ignore"):
        v = _mix(low.astype(np.uint64) * _M1 + (off.astype(np.uint64) << np.uint64(40)))
        v[~inword] = 0
        raw = np.add.reduceat(v, starts)  # each word: sum over its characters (trailing non-word characters add 0)
    word_doc = doc[starts]
    # slot 0: the word after the candidate (cs[i] is the index of the next word to start)
    base = cs[cand]
    out = np.zeros((len(cand), width), dtype=np.int64)
    full = {}
    for k in sorted({*slots, *(k for pair in pairs for k in pair)}):
        w = base + k
        ok = (w >= 0) & (w < len(starts))
        wc = np.clip(w, 0, len(starts) - 1)
        ok &= word_doc[wc] == doc[cand]
        full[k] = np.where(ok, raw[wc], np.uint64(0))
    nb = np.uint64(buckets - 1)
    for j, k in enumerate(slots):
        out[:, j] = np.where(full[k] > 0, (full[k] % nb).astype(np.int64) + 1, 0)
    with np.errstate(over="ignore"):
        for j, (k1, k2) in enumerate(pairs, start=len(slots)):
            a, b = full[k1], full[k2]
            pair = (_mix(a * _M1 + b + np.uint64(j)) % nb).astype(np.int64) + 1
            out[:, j] = np.where((a > 0) & (b > 0), pair, 0)
    return out


def featurize(texts: list[str], vocab: int, margin: int, word_buckets: int = 0, slots=WORD_SLOTS,
              pairs=WORD_PAIRS, masks: list[np.ndarray | None] | None = None) -> Packed:
    """Pack ``texts`` into feature arrays. Vectorised over the whole batch: one encode per document. ``masks``: per
    text, the rule splitter's sentence ends (``rule_mask``) or None (no opinion)."""
    table = class_table()
    parts_cp, parts_low, starts, lengths = [], [], [], []
    pos = margin
    pad = np.zeros(margin, dtype=np.uint32)
    parts_cp.append(pad)
    parts_low.append(pad)
    for t in texts:
        cp = _codepoints(t)
        parts_cp += [cp, pad]
        parts_low += [_codepoints(_lower_same_length(t)) if t else cp, pad]
        starts.append(pos)
        lengths.append(len(cp))
        pos += len(cp) + margin
    cps = np.concatenate(parts_cp)
    low = np.concatenate(parts_low).astype(np.int64)
    cls = table[np.minimum(cps, TABLE_SIZE - 1)]
    cls[cps >= TABLE_SIZE] = OTHER
    # pads: positions inside no document
    inside = np.zeros(len(cps) + 1, dtype=np.int64)
    st = np.asarray(starts, dtype=np.int64)
    ln = np.asarray(lengths, dtype=np.int64)
    np.add.at(inside, st, 1)
    np.add.at(inside, st + ln, -1)
    is_pad = np.cumsum(inside[:-1]) == 0
    cls[is_pad] = PAD
    # ASCII keeps its own ids; everything else hashes into the rest of the vocabulary
    ids = np.where(low < 128, low, 128 + (low * 2654435761 % (vocab - 128)))
    ids[is_pad] = 0
    nxt = np.r_[cls[1:], PAD]
    c = cls
    end_like = (nxt == SPACE) | (nxt == NEWLINE) | (nxt == PAD)
    # A word may end in a combining mark (Indic vowel signs, Yoruba tone marks): without punctuation that mark is
    # where the sentence ends, so a mark before whitespace is a candidate too (format 2 missed them: 0 F1 on
    # unpunctuated Malayalam, Marathi, Tamil, Telugu). Nothing followed by a mark is, so no cut splits a grapheme.
    cand = ((c != PAD) & (c != SPACE) & (c != NEWLINE)
            & (end_like | (c == NOSPACE) | (c == TERMINAL) | (c == CLOSING)) & (nxt != MARK))
    cand_pos = np.flatnonzero(cand)
    rule = np.zeros(len(cand_pos), dtype=np.int64)
    if masks is not None:
        flags = np.zeros(len(cps), dtype=np.int64)
        for s, n, m in zip(st.tolist(), ln.tolist(), masks):
            if m is not None:
                flags[s:s + n] = np.where(m[:n], RULE_YES, RULE_NO)
        rule = flags[cand_pos]
    if word_buckets:
        first = np.zeros(len(cps), dtype=np.int64)
        first[st] = 1
        doc = np.cumsum(first) - 1  # document index per position
        doc[is_pad] = -1
        words = _word_features(low, cls, doc, cand_pos, word_buckets, slots, pairs)
    else:
        words = np.zeros((len(cand_pos), 0), dtype=np.int64)
    return Packed(ids, cls, st, ln, cand_pos, words, rule)


class SegmenterModel:
    """The numpy forward pass of a model file written by ``curate train segmenter`` (.npz + JSON config)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        with np.load(self.path, allow_pickle=False) as z:
            self.config = json.loads(bytes(z["config"]).decode())
            w = {k: z[k].astype(np.float32) for k in z.files if k != "config"}
        cfg = self.config
        if cfg.get("format") != MODEL_FORMAT:
            raise ValueError(f"{self.path}: segmenter format {cfg.get('format')!r}, this code reads {MODEL_FORMAT!r} "
                             "(retrain it with `curate train segmenter`)")
        self.vocab, self.offsets = int(cfg["vocab"]), np.asarray(cfg["offsets"], dtype=np.int64)
        self.kernel = int(cfg["kernel"])
        self.word_buckets = int(cfg.get("word_buckets", 0))
        self.word_slots = tuple(cfg["word_slots"])
        self.word_pairs = tuple(tuple(p) for p in cfg["word_pairs"])
        self.margin = int(cfg["margin"])
        self.emb, self.emb_cls = w["emb"], w["emb_cls"]
        conv = w["conv_w"]  # torch Conv1d layout (C, d, k) -> im2col matrix (k*d, C)
        self.conv_w = np.ascontiguousarray(conv.transpose(2, 1, 0).reshape(-1, conv.shape[0]))
        self.conv_b = w["conv_b"]
        self.proj_w, self.proj_b = np.ascontiguousarray(w["proj_w"].T), w["proj_b"]
        self.fc1_w, self.fc1_b = np.ascontiguousarray(w["fc1_w"].T), w["fc1_b"]
        self.fc2_w, self.fc2_b = np.ascontiguousarray(w["fc2_w"].T), w["fc2_b"]
        self.word_emb = w.get("word_emb")
        # the rule input enters the head's first layer as one of three embeddings: a bias vector per rule state
        n_in = len(self.offsets) * self.proj_w.shape[1] + (n_word_features(self.word_slots, self.word_pairs)
                                                          * self.word_emb.shape[1] if self.word_buckets else 0)
        self.rule_bias = (w["rule_emb"] @ self.fc1_w[n_in:]).astype(np.float32)
        self.fc1_w = np.ascontiguousarray(self.fc1_w[:n_in])
        self.sha256 = file_sha256(self.path)

    @property
    def identity(self) -> str:
        return f"{Path(self.path).name}@{self.sha256[:16]}"

    def _chunk(self, ids: np.ndarray, cls: np.ndarray, cand: np.ndarray, words: np.ndarray,
               rule: np.ndarray) -> np.ndarray:
        """Boundary logits at ``cand`` (positions relative to the chunk; the chunk has margins on both sides)."""
        k = self.kernel
        x = np.take(self.emb, ids, axis=0)
        x += np.take(self.emb_cls, cls, axis=0)
        half = k // 2
        xp = np.pad(x, ((half, k - 1 - half), (0, 0)))
        # windows as one contiguous (n, k*d) matrix: BLAS cannot take the overlapping view directly (20% slower)
        win = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(xp, (k, x.shape[1])).reshape(len(x), -1))
        h = win @ self.conv_w
        h += self.conv_b
        np.maximum(h, 0, out=h)
        h = h @ self.proj_w
        h += self.proj_b
        n = len(cand)
        feats = np.take(h, (cand[:, None] + self.offsets[None, :]).ravel(), axis=0).reshape(n, -1)
        z = feats @ self.fc1_w[:feats.shape[1]]
        if self.word_buckets:
            z += np.take(self.word_emb, words.ravel(), axis=0).reshape(n, -1) @ self.fc1_w[feats.shape[1]:]
        z += self.fc1_b
        z += self.rule_bias[rule]
        np.maximum(z, 0, out=z)
        return (z @ self.fc2_w)[:, 0] + self.fc2_b[0]

    def predict_packed(self, packed: Packed, chunk: int = 1 << 13) -> np.ndarray:
        """Probability per candidate, computed over fixed-size chunks of the packed array (linear time). Chunks of
        8 K characters keep the activations in cache: 2x faster than 64 K on the dev split."""
        out = np.empty(len(packed.candidates), dtype=np.float32)
        m, n = self.margin, len(packed.ids)
        cand = packed.candidates
        lo = 0
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            hi = np.searchsorted(cand, b, side="left")
            if hi > lo:
                s, e = max(0, a - m), min(n, b + m)
                out[lo:hi] = self._chunk(packed.ids[s:e], packed.cls[s:e], cand[lo:hi] - s, packed.words[lo:hi],
                                         packed.rule[lo:hi])
            lo = hi
        return 1.0 / (1.0 + np.exp(-out))

    def predict_proba(self, texts: list[str], masks: list[np.ndarray | None] | None = None) -> list[np.ndarray]:
        """Per-character sentence-end probability for each text (0 where no sentence can end). ``masks``: the rule
        splitter's ends per text (``rule_masks``), an input of the model; None: no rule opinion."""
        packed = featurize(texts, self.vocab, self.margin, self.word_buckets, self.word_slots, self.word_pairs,
                           masks)
        probs = self.predict_packed(packed)
        return unpack(packed, probs)


PUNCT_DENSITY_CHARS = 400  # a text with fewer than one terminal mark per this many characters is "unpunctuated"
# ':' too: Armenian text often ends its sentences with an ASCII colon instead of '։'
_MAIN_TERMINALS = ".!?。！？؟।॥…։።፧۔။:"
KINDS = ("clean", "lower", "nopunct", "both")  # named after the corruption the text looks like


_TERMINAL_RE = re.compile("[" + re.escape(_MAIN_TERMINALS) + "]")


def is_punctuated(text: str) -> bool:
    """Whether the text marks its sentence ends."""
    need = max(1, len(text) // PUNCT_DENSITY_CHARS)
    marks = 0
    for _ in _TERMINAL_RE.finditer(text):
        marks += 1
        if marks >= need:
            return True
    return False


def text_kind(text: str) -> str:
    """Which of SaT's corruptions the text looks like: punctuated or not, and lower-cased (letters of a cased script,
    none of them capital) or not. The evidence left differs (words alone in "both"), so do the model's probabilities:
    each kind gets its own threshold, chosen on held-out training text. Caseless scripts count as cased: nothing was
    lost. Computed with str methods only (C speed on megabyte documents)."""
    lowered = text == text.lower() and text != text.upper()
    if is_punctuated(text):
        return "lower" if lowered else "clean"
    return "both" if lowered else "nopunct"


# Keys of a model's thresholds: one per kind of text, and for punctuated text a pair used with the rule signal -
# one at the characters where the rule splitter (sentencex) ends a sentence, one everywhere else.
PUNCTUATED = ("clean", "lower")
THRESHOLD_KEYS = KINDS + tuple(f"{k}_{r}" for k in PUNCTUATED for r in ("rule", "norule"))


def rule_mask(text: str, lang: str | None) -> np.ndarray:
    """Where sentencex (rules for ~300 languages, English's where it has none) ends a sentence: True at the last
    non-space character of each of its sentences."""
    import sentencex

    mask = np.zeros(len(text), dtype=bool)
    for b in sentencex.get_sentence_boundaries(lang or "en", text):
        k = int(b["end_index"]) - 1
        while k > b["start_index"] and text[k].isspace():
            k -= 1
        if 0 <= k < len(text):
            mask[k] = True
    return mask


def rule_masks(texts: list[str], langs: list[str | None], rules: bool = True,
               kinds: list[str] | None = None) -> list[np.ndarray | None]:
    """The rule signal per text, as the model and the decision take it: sentencex's ends on punctuated text, else
    None (rules find nothing without punctuation). A text of unknown language gets sentencex's default (English)
    rules: on held-out training text they keep 0.949 of the 0.951 clean macro-F1 the language's own rules give,
    the model without any rule opinion 0.932 (lower-cased: 0.944 / 0.943 / 0.923). ``kinds``: the texts'
    ``text_kind`` when the caller has them (a scan of each text, not to be done twice)."""
    kinds = kinds or [text_kind(t) for t in texts]
    return [rule_mask(t, lang) if rules and kind in PUNCTUATED else None
            for t, lang, kind in zip(texts, langs, kinds)]


def sentence_ends(text: str, probs: np.ndarray, thresholds: dict[str, float], mask: np.ndarray | None = None,
                  kind: str | None = None) -> list[int]:
    """Indices of sentence-final characters. ``mask``: the rule splitter's ends (``rule_masks``), which the model
    already saw as an input; on punctuated text its boundaries also need less probability, the model's other
    candidates more (both thresholds chosen on held-out text). ``kind``: the text's ``text_kind``, if known."""
    return np.flatnonzero(decide(probs, kind or text_kind(text), thresholds, mask)).tolist()


def decide(probs: np.ndarray, kind: str, thresholds: dict[str, float], mask: np.ndarray | None = None) -> np.ndarray:
    """Sentence ends (bool per character) of a text of this ``kind``; ``mask``: the rule splitter's ends, used on
    punctuated text only. The one decision rule, shared by the operator and the threshold search in training."""
    if mask is None or kind not in PUNCTUATED:
        return probs > thresholds[kind]
    return probs > np.where(mask, thresholds[f"{kind}_rule"], thresholds[f"{kind}_norule"])


def model_thresholds(config: dict, lang: str | None = None) -> dict[str, float]:
    """The model's thresholds, the language's own where training chose some for it."""
    own = config.get("language_thresholds", {}).get(lang or "", {})
    return {k: float(own.get(k, config["thresholds"][k])) for k in THRESHOLD_KEYS}


def unpack(packed: Packed, probs: np.ndarray) -> list[np.ndarray]:
    full = np.zeros(len(packed.ids), dtype=np.float32)
    full[packed.candidates] = probs
    return [full[s:s + n] for s, n in zip(packed.starts.tolist(), packed.lengths.tolist())]


def bundled_model_path() -> str:
    return str(Path(__file__).parent / "assets" / "segmenter.npz")


@functools.lru_cache(maxsize=4)
def load_model(path: str | None = None) -> SegmenterModel:
    path = path or bundled_model_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"segmenter model not found: {path} (rebuild it with `curate train segmenter`)")
    return SegmenterModel(path)


# --- from probabilities to spans ------------------------------------------------------------------------------

def spans_from_boundaries(text: str, ends: list[int], probs: np.ndarray) -> list[list]:
    """Spans ``[start, end, prob]`` that tile ``text``: a sentence runs to just after its last character plus the
    whitespace that follows it, so ``"".join(text[s:e]) == text``. ``ends`` are indices of sentence-final chars.
    Whitespace-only or empty text has no sentences."""
    n = len(text)
    if not text.strip():
        return []
    cuts = []
    for i in ends:
        j = i + 1
        while j < n and text[j].isspace():
            j += 1
        if 0 < j < n and (not cuts or j > cuts[-1]):
            cuts.append(j)
    bounds = [0, *cuts, n]
    spans = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        last = b - 1
        while last > a and text[last].isspace():
            last -= 1
        p = 1.0 if b == n else float(probs[last]) if len(probs) else 1.0
        spans.append([a, b, round(p, 4)])
    # a leading whitespace-only span belongs to the first sentence
    if len(spans) > 1 and not text[spans[0][0]:spans[0][1]].strip():
        spans[1][0] = 0
        spans.pop(0)
    return spans


def fit_lengths(text: str, spans: list[list], probs: np.ndarray, max_length: int | None,
                min_length: int | None) -> list[list]:
    """Enforce a character budget like wtpsplit's ``max_length``/``min_length``, keeping the text exact.

    Over-long spans are cut where the summed log boundary probability is highest subject to every piece fitting
    (a linear-time dynamic programme with a monotone queue); cuts never fall before a combining mark. Spans shorter
    than ``min_length`` are merged into their neighbour when the merge still fits ``max_length``."""
    out: list[list] = []
    for a, b, p in spans:
        if max_length and b - a > max_length:
            out.extend(_cut_to_fit(text, a, b, p, probs, max_length))
        else:
            out.append([a, b, p])
    if min_length:
        merged: list[list] = []
        for s in out:
            if merged and (merged[-1][1] - merged[-1][0] < min_length) and \
                    (not max_length or s[1] - merged[-1][0] <= max_length):
                merged[-1] = [merged[-1][0], s[1], s[2]]
            else:
                merged.append(list(s))
        if len(merged) > 1 and merged[-1][1] - merged[-1][0] < min_length and \
                (not max_length or merged[-1][1] - merged[-2][0] <= max_length):
            last = merged.pop()
            merged[-1] = [merged[-1][0], last[1], last[2]]
        out = merged
    return out


def _cut_to_fit(text: str, a: int, b: int, p_end: float, probs: np.ndarray, limit: int) -> list[list]:
    from collections import deque

    table = class_table()
    n = b - a
    # score of cutting after position a+i-1 (i = piece length so far); -inf where cutting splits a grapheme
    seg = np.asarray(probs[a:b], dtype=np.float64) if len(probs) else np.zeros(n)
    cps = _codepoints(text[a:b])
    nxt_mark = np.r_[table[np.minimum(cps[1:], TABLE_SIZE - 1)] == MARK, False]
    # a cut after a sentence's trailing whitespace carries that sentence's probability (spans keep their
    # whitespace); a cut right before the whitespace is worth half; elsewhere whitespace is slightly preferred
    sp = np.array([c.isspace() for c in text[a:b]], dtype=bool)
    nxt_sp = np.r_[sp[1:], False]
    last = np.maximum.accumulate(np.where(~sp, np.arange(n), -1))
    eff = np.where(sp & ~nxt_sp & (last >= 0), seg[np.maximum(last, 0)], np.where(~sp & nxt_sp, 0.5 * seg, seg))
    score = np.log(np.clip(eff, 1e-6, 1.0)) + np.where(nxt_sp, 1e-3, 0.0)
    score[nxt_mark] = -np.inf
    # dp[j]: best total for a prefix of length j ending in a cut (j = 0 start, j = n end)
    dp = np.full(n + 1, -np.inf)
    back = np.zeros(n + 1, dtype=np.int64)
    dp[0] = 0.0
    q: deque[int] = deque([0])
    for j in range(1, n + 1):
        while q and q[0] < j - limit:
            q.popleft()
        if q:
            i = q[0]
            gain = 0.0 if j == n else score[j - 1]
            dp[j] = dp[i] + gain
            back[j] = i
        if np.isfinite(dp[j]):
            while q and dp[q[-1]] <= dp[j]:
                q.pop()
            q.append(j)
    if not np.isfinite(dp[n]):  # only marks everywhere: cut anyway, by code point
        return [[a + s, min(b, a + s + limit), p_end] for s in range(0, n, limit)]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(back[cuts[-1]]))
    cuts.reverse()
    return [[a + s, a + e, p_end if e == n else round(float(eff[e - 1]), 4)] for s, e in zip(cuts[:-1], cuts[1:])]
