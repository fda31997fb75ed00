"""segment: the bundled SaT-style model, its spans, length budgets, backends, training, and accuracy on dev text."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from operators.segment import eval as se
from operators.segment.model import RULE_NO, RULE_NONE, RULE_YES, THRESHOLD_KEYS, featurize, fit_lengths, \
    load_model, rule_mask, rule_masks, sentence_ends, spans_from_boundaries, text_kind
from operators.segment.operator import Segment, SegmentParams

FIXTURE = Path(__file__).parent / "fixtures" / "sentences"

MIXED = [
    "",
    "   \n\t ",
    "Dr. Smith went to Washington. He arrived at 5 p.m. and left! Did he? yes",
    "你在找些什麼？收拾好哥哥的物品再拿去他的新家。該取走的都取走了！",
    "ذهب الولد إلى المدرسة. ثم عاد إلى البيت؟ نعم",
    "राम घर गया। वह थक गया था। फिर वह सो गया",
    "ฉันไปตลาดเมื่อวานนี้ ฉันซื้อผลไม้มากมาย แล้วฉันก็กลับบ้าน",
    "日本語の文です。次の文もあります。English follows. And Ελληνικά εδώ; Русский текст тоже!",
    "i want a flight from boston to denver show me the cheapest fare what time does it leave",
    "a\u0301b\u0301c\u0301 e\u0301. Ok\u200d. 👍🏽 done 🚀. next",
]


def segment(texts: list[str], **params) -> list[list]:
    op = Segment(SegmentParams(**params))
    op.setup()
    return op.spans(texts, [None] * len(texts))


def assert_tiles(text: str, spans: list) -> None:
    if not text.strip():
        assert spans == []
        return
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert "".join(text[int(a):int(b)] for a, b, _ in spans) == text
    for (a, b, p), nxt in zip(spans, spans[1:]):
        assert b == nxt[0] and b > a and 0.0 <= p <= 1.0
        assert unicodedata.category(text[int(b)])[0] != "M", f"cut before a combining mark at {b}"
        assert text[int(b)] not in "\u200d\ufe0f" and not (0x1F3FB <= ord(text[int(b)]) <= 0x1F3FF)


def test_spans_tile_the_text_in_every_script():
    spans = segment(MIXED)
    for text, sp in zip(MIXED, spans):
        assert_tiles(text, sp)
    by_text = dict(zip(MIXED, spans))
    assert len(by_text[MIXED[2]]) >= 3  # Dr. is not an end; "left!" and "he?" are
    assert not any(MIXED[2][int(b) - 4:int(b)].startswith("Dr.") for _, b, _ in by_text[MIXED[2]][:-1])
    assert len(by_text[MIXED[3]]) == 3  # Chinese: every ideograph could end a sentence; the model picks the 3
    assert len(by_text[MIXED[8]]) >= 2  # no punctuation, no casing: still split (ATIS style)


def test_empty_and_whitespace_documents_through_the_operator():
    op = Segment(SegmentParams())
    op.setup()
    table = pa.table({"id": ["a", "b", "c"], "text": ["", "  \n ", "One. Two."]})
    out = op.process(table)
    assert out.column("segment__sentences__count").to_pylist() == [0, 0, 2]
    assert out.column("segment__sentences__spans").to_pylist()[:2] == [[], []]


def test_probabilities_do_not_depend_on_batching():
    model = load_model()
    together = model.predict_proba(MIXED)
    for text, p in zip(MIXED, together):
        alone = model.predict_proba([text])[0]
        np.testing.assert_allclose(alone, p, atol=1e-5)
        assert len(p) == len(text)


@pytest.mark.timeout(120)
def test_five_megabyte_document_is_processed_in_windows():
    model = load_model()
    docs = se.load_docs(FIXTURE / "dev_sample.jsonl")
    piece = " ".join(se.build(d, "both")[0] for d in docs)
    big = (piece + " ") * (5_000_000 // (len(piece) + 1) + 1)
    big = big[:5_000_000]
    packed = featurize([big], model.vocab, model.margin, model.word_buckets, model.word_slots, model.word_pairs)
    whole = model.predict_packed(packed, chunk=1 << 16)
    other = model.predict_packed(packed, chunk=12_345)  # a different window size gives the same numbers
    np.testing.assert_allclose(whole, other, atol=1e-5)
    spans = segment([big])[0]
    assert_tiles(big, spans)
    assert len(spans) > 1000


def test_max_and_min_length_budgets_keep_the_text_exact():
    text = "word " * 3000 + "and then a long run without spaces " + "x" * 2500 + " end. Short. A. B. C."
    for mx in (50, 200, 1000):
        spans = segment([text], max_length=mx)[0]
        assert_tiles(text, spans)
        assert max(b - a for a, b, _ in spans) <= mx
    text = "One. Two. Three is a longer sentence here. Four. Five is also a longer one here. Six is the end."
    plain = segment([text])[0]
    spans = segment([text], min_length=12, max_length=60)[0]
    assert_tiles(text, spans)
    assert min(b - a for a, b, _ in plain) < 12 and len(spans) < len(plain)
    assert all(12 <= b - a <= 60 for a, b, _ in spans)
    # budget cuts prefer likely boundaries: a text of short sentences cut to 60 chars cuts after periods
    sents = ["This is sentence number %d." % i for i in range(40)]
    text = " ".join(sents)
    probs = load_model().predict_proba([text])[0]
    pieces = fit_lengths(text, [[0, len(text), 1.0]], probs, 60, None)
    assert all(text[int(b) - 2] == "." for _, b, _ in pieces[:-1])


def test_cut_never_splits_a_grapheme_even_without_candidates():
    text = "e\u0301" * 500  # no spaces, every second code point is a combining mark
    spans = fit_lengths(text, spans_from_boundaries(text, [], np.zeros(len(text))), np.zeros(len(text)), 31, None)
    assert_tiles(text, spans)
    assert max(b - a for a, b, _ in spans) <= 31


def _macro(langs_docs, how):
    scores = []
    for lang, docs in langs_docs.items():
        built = [b for b in (se.build(d, how) for d in docs) if b[0]]
        prf = se.PRF()
        for (text, gold), spans in zip(built, segment([t for t, _ in built])):
            prf.add(gold, se.boundaries_from_spans(text, spans))
        scores.append(prf.f1)
    return float(np.mean(scores))


def test_bundled_model_finds_boundaries_without_punctuation_or_casing():
    """The point of a SaT-style model: rules find nothing in (d), the bundled model must."""
    import blingfire

    docs: dict[str, list] = {}
    for d in se.load_docs(FIXTURE / "dev_sample.jsonl"):
        docs.setdefault(d.lang, []).append(d)
    clean = _macro(docs, "clean")
    both = _macro(docs, "both")
    rule = []
    for lang, ds in docs.items():
        prf = se.PRF()
        for d in ds:
            text, gold = se.build(d, "both")
            _, offs = blingfire.text_to_sentences_and_offsets(text)
            prf.add(gold, se.boundaries_from_spans(text, offs))
        rule.append(prf.f1)
    assert clean > 0.8, clean
    assert both > float(np.mean(rule)) + 0.3, (both, rule)


def test_rules_backend_and_metadata_language():
    op = Segment(SegmentParams(backend="rules"))
    op.setup()
    table = pa.table({"id": ["a", "b"], "text": ["Hello there. How are you?", "Bonjour. Ça va?"],
                      "metadata": ['{"language": "en"}', None]})
    out = op.process(table)
    spans = out.column("segment__sentences__spans").to_pylist()
    assert [len(s) for s in spans] == [2, 2]
    for text, sp in zip(table.column("text").to_pylist(), spans):
        assert_tiles(text, sp)


def test_sat_backend_fails_clearly_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="needs `model`"):
        SegmentParams(backend="sat")
    op = Segment(SegmentParams(backend="sat", model=str(tmp_path / "missing")))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        op.setup()
    op = Segment(SegmentParams(backend="sat", model="sat-3l-sm"))
    with pytest.raises(RuntimeError, match="not on PyPI.*local|copy a model folder"):
        op.setup()


def test_training_command_builds_a_loadable_model(tmp_path):
    from curate.cli import main

    data = tmp_path / "sentences"
    (data / "train").mkdir(parents=True)
    (data / "train" / "en.jsonl").write_text((FIXTURE / "train_en_sample.jsonl").read_text())
    (data / "train" / "xx.jsonl").write_text((FIXTURE / "train_en_sample.jsonl").read_text().replace(
        '"lang": "en"', '"lang": "xx"'))
    out = tmp_path / "seg.npz"
    args = ["train", "segmenter", "--data", str(data), "--out", str(out), "--epochs", "2", "--exclude", "xx"]
    assert main(args) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] and record["data"]["languages"] == ["en"]  # xx left out
    assert set(record["thresholds"]) == set(THRESHOLD_KEYS)
    model = load_model(str(out))
    probs = model.predict_proba(["one sentence. another one."])[0]
    assert probs.shape == (26,) and np.all((probs >= 0) & (probs <= 1))
    # same data, seed and settings: the same file, byte for byte
    again = tmp_path / "again.npz"
    assert main([*args[:5], str(again), *args[6:]]) == 0
    assert again.read_bytes() == out.read_bytes()
    with pytest.raises(ValueError, match="dev/ split is never read"):
        main(["train", "segmenter", "--data", str(data / "train"), "--out", str(out)])


def test_kind_of_text_picks_the_threshold():
    """Each corruption of a document is recognised as such (so it gets the threshold chosen for it); caseless
    scripts are never mistaken for lower-cased text."""
    docs = [d for d in se.load_docs(FIXTURE / "dev_sample.jsonl") if text_kind(se.build(d, "clean")[0]) == "clean"]
    assert len(docs) >= 20  # (ATIS and some speech transcripts are lower-case and unpunctuated to begin with)
    kinds = [(how, text_kind(se.build(d, how)[0])) for d in docs for how in se.CORRUPTIONS]
    assert sum(a == b for a, b in kinds) / len(kinds) > 0.95, kinds
    assert text_kind("你在找些什麼？收拾好哥哥的物品再拿去他的新家。") == "clean"
    assert text_kind("show me flights from boston to denver what time") == "both"
    assert text_kind("Show me flights from Boston to Denver What time") == "nopunct"
    assert text_kind("show me flights. what time is it? now.") == "lower"


def test_threshold_overrides_and_old_model_files(tmp_path):
    config = load_model().config
    lang = sorted(config["language_thresholds"])[0]  # a language with thresholds of its own
    op = Segment(SegmentParams(threshold=0.9))
    op.setup()
    assert op.thresholds(lang) == op.thresholds(None) == dict.fromkeys(THRESHOLD_KEYS, 0.9)
    op = Segment(SegmentParams(threshold_unpunctuated=0.05))
    op.setup()
    assert op.thresholds(None) == {**config["thresholds"], "nopunct": 0.05, "both": 0.05}
    assert op.thresholds(lang) == {**config["thresholds"], **config["language_thresholds"][lang], "nopunct": 0.05,
                                   "both": 0.05}
    op = Segment(SegmentParams())
    op.setup()
    assert op.thresholds(lang) != op.thresholds("no-such-language") == config["thresholds"]
    # a model file of another format is refused with the command that fixes it
    z = dict(np.load(load_model().path))
    cfg = json.loads(bytes(z["config"]).decode())
    z["config"] = np.frombuffer(json.dumps({**cfg, "format": "curate-segmenter/1"}).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **z)
    with pytest.raises(ValueError, match="retrain it with `curate train segmenter`"):
        load_model(str(tmp_path / "old.npz"))


def test_bundled_model_card_matches_the_file():
    from curate.files import file_sha256
    from operators.segment.model import bundled_model_path

    path = Path(bundled_model_path())
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == file_sha256(str(path))
    assert path.stat().st_size <= 20 * 1024 * 1024


def test_rule_signal_moves_the_threshold_on_punctuated_text_only():
    text = "He met Dr. Smith at 5 p.m. in town. Then he left."
    mask = rule_mask(text, "en")
    ends = set(np.flatnonzero(mask).tolist())
    assert text.index("town.") + 4 in ends and text.index("Dr.") + 2 not in ends
    th = {"clean": 0.5, "lower": 0.5, "nopunct": 0.5, "both": 0.5, "clean_rule": 0.2, "clean_norule": 0.8,
          "lower_rule": 0.2, "lower_norule": 0.8}
    probs = np.zeros(len(text), dtype=np.float32)
    town, dr = text.index("town.") + 4, text.index("Dr.") + 2
    probs[town], probs[dr] = 0.3, 0.6  # the model alone: "Dr." ends a sentence, "town." does not
    assert sentence_ends(text, probs, th) == [dr]  # the model alone
    [m] = rule_masks([text], ["en"])
    assert sentence_ends(text, probs, th, m) == [town]
    assert np.array_equal(rule_masks([text], [None])[0], m)  # unknown language: sentencex's default rules
    assert rule_masks([text], ["en"], rules=False) == [None]
    flat = "he met dr smith at five in town then he left"  # unpunctuated: the rules have no say
    assert rule_masks([flat], ["en"]) == [None]


def test_rule_opinion_is_an_input_of_the_model():
    """Format 3: the rule splitter's ends reach the head as one of three states per candidate, and they change
    the model's probabilities where (and only where) the text has candidates."""
    text = "He met Dr. Smith at 5 p.m. in town. Then he left. Fine"
    masks = rule_masks([text, text], ["en", "en"], rules=True)[:1] + [None]
    packed = featurize([text, text], 8192, 30, 0, masks=masks)
    first = packed.candidates < packed.starts[1]
    states = set(packed.rule[first].tolist())
    assert states == {RULE_NO, RULE_YES} and set(packed.rule[~first].tolist()) == {RULE_NONE}
    town = packed.starts[0] + text.index("town.") + 4
    assert packed.rule[packed.candidates == town].tolist() == [RULE_YES]
    model = load_model()
    with_rules, without = model.predict_proba([text], masks[:1])[0], model.predict_proba([text])[0]
    assert not np.allclose(with_rules, without)
    assert np.array_equal(with_rules > 0, without > 0)  # same candidates


def test_a_word_may_end_in_a_combining_mark():
    """Without punctuation, a sentence can end on an Indic vowel sign or a Yoruba tone mark: such a mark before a
    space is a candidate (format 2 had none there: 0 F1 on unpunctuated Malayalam, Marathi, Tamil, Telugu)."""
    text = "वह घर गया वह थक गया था"  # "गया" ends in the vowel sign ा (a combining mark)
    packed = featurize([text], 8192, 30, 0)
    ends = set((packed.candidates - packed.starts[0]).tolist())
    gaya = text.index("गया") + 2
    assert unicodedata.category(text[gaya])[0] == "M" and gaya in ends
    assert all(unicodedata.category(text[i + 1])[0] != "M" for i in ends if i + 1 < len(text))
