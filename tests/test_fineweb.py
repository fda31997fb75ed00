"""FineWeb's filters as curate steps (scorers/fineweb/, operators/edit.py): the definitions checked against
independent implementations of the published rules and hand-computed values, the edit that cuts C4's lines
reproducing C4's text exactly, span bookkeeping, and the recipe run end to end on the bundled sample.

Parity with datatrove itself, page by page, is measured by `bench/parity.py` (datatrove in its own venv).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO
from curate import schema
from operators.edit import Apply, Edit, EditParams, apply_spans
from scorers.fineweb.c4 import C4, C4Params, CITATION, POLICY, c4_lines
from scorers.fineweb.gopher import Gopher, GopherParams, repeated_ngram_chars, top_ngram_chars
from scorers.fineweb.pii import Pii, PiiParams, pii_spans
from scorers.fineweb.quality import FineWebQuality, FineWebQualityParams
from scorers.fineweb.text import WordTokenizer, tokenizer
from scorers.fineweb.url import UrlFilter, UrlFilterParams


def rows(**cols) -> pa.Table:
    n = len(next(iter(cols.values())))
    base = {"id": [f"d{i}" for i in range(n)], schema.FILE: ["f"] * n, schema.ORD: list(range(n))}
    return schema.conform(pa.table({**base, **cols}))


def run(op_cls, params, table: pa.Table) -> pa.Table:
    op = op_cls(params)
    op.setup()
    return op.process(table)


# ------------------------------------------------------------------------------------------ words and sentences
def test_words_are_spacy_tokens_with_punctuation():
    tok = tokenizer("en")
    with tok.batch():
        assert tok.words("Hello, world! Don't stop...  e-mail") == \
            ["Hello", ",", "world", "!", "Do", "n't", "stop", "...", "e", "-", "mail"]
        assert tok.sentences("Mr. Smith went home. He came back! Really? yes") == 4
        assert tok.sentences("e.g. this is i.e. fine") == 1
    with pytest.raises(ValueError, match="no spaCy tokenizer for language 'xx-nope'"):
        tokenizer("xx-nope")


def test_cached_pieces_give_spacys_own_tokens_and_sentences():
    """Words and sentence counts from per-piece tokens (text.py) equal spaCy's over the whole text, on real page
    text with its whitespace and punctuation shuffled."""
    import spacy

    from conftest import sample_responses
    from curate.htmldecode import decode_html
    import trafilatura

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    texts = []
    for url, ctype, body in list(sample_responses(html_only=True))[:25]:
        text = trafilatura.extract(decode_html(body, ctype)[0], output_format="txt")
        if text:
            texts.append(text)
    rng = random.Random(5)
    seps = [" ", "  ", "\n", "\t", "\u00a0", " \n ", ". ", " . ", "!  ", "?\n", "... ", "\u2028"]
    for _ in range(400):
        words = rng.choice(texts).split()
        start = rng.randrange(len(words))
        texts.append(rng.choice(["", " ", "\n "]) + "".join(w + rng.choice(seps) for w in words[start:start + 40]))
    tok = WordTokenizer("en")
    with tok.batch():
        tok.prefill(texts[:200])  # half the pieces tokenized in bulk, the rest one by one
        for text in texts:
            assert tok.words(text) == [t.text.strip() for t in nlp.tokenizer(text) if t.text.strip()]
            for line in text.splitlines():
                assert tok.sentences(line) == len(list(nlp(line).sents)), line


# ------------------------------------------------------------------------------------------ gopher
def test_gopher_ngram_definitions():
    words = "a b a b a b c".split()
    assert top_ngram_chars(words, 2) == len("a b") * 3  # the most frequent 2-gram, joined with a space
    assert top_ngram_chars(["x", "y"], 3) == 0  # no 3-gram: no repetition
    assert top_ngram_chars("one two three".split(), 2) == len("one two")  # counted even when it occurs once
    # repeated 2-grams joined without spaces; after a repeat the scan moves past it
    assert repeated_ngram_chars("a b a b a b".split(), 2) == len("ab") * 2


def test_gopher_signals_by_hand():
    text = "The cat sat with the dog.\nThe cat sat with the dog.\n- a list item\n# heading ..."
    out = run(Gopher, GopherParams(), rows(text=[text, ""]))
    get = lambda k: out.column(k).to_pylist()  # noqa: E731
    words = tokenizer("en").words(text)
    assert get("gopher__repetition__dup_line_frac")[0] == 1 / 4
    assert get("gopher__repetition__dup_line_char_frac")[0] == len("The cat sat with the dog.") / len(text)
    assert get("gopher__quality__hash_ratio")[0] == 1 / len(words)
    assert get("gopher__quality__bullet_lines_frac")[0] == 1 / 4
    assert get("gopher__quality__end_ellipsis_lines_frac")[0] == 1 / 4
    assert get("gopher__quality__stop_words")[0] == 2  # "with" and "the": case-sensitive, distinct
    non_symbol = [w for w in words if w not in (".", "-", "#", "...")]
    assert get("gopher__quality__words")[0] == len(non_symbol)
    assert get("gopher__quality__alpha_words_frac")[0] == len(non_symbol) / len(words)
    assert all(v[1] is None for v in (get("gopher__quality__words"), get("gopher__repetition__dup_line_frac")))


# ------------------------------------------------------------------------------------------ C4 lines and edit
def c4_reference(text: str, p: C4Params, sentences) -> tuple[str, int] | None:
    """C4's line filter as Raffel et al. describe it and FineWeb configures it, written plainly: None when the
    document is dropped (lorem ipsum, a curly bracket), else (the text left, its sentence count)."""
    kept, n = [], 0
    for line in text.splitlines():
        line = line.strip()
        words = line.split()
        if any(len(w) > p.max_word_length for w in words):
            continue
        line = CITATION.sub("", line)
        if len(words) < p.min_words_per_line:
            continue
        low = line.lower()
        if "lorem ipsum" in low:
            return None
        if "javascript" in low:
            continue
        if "{" in line:
            return None
        if any(x in low for x in POLICY):
            continue
        n += sentences(line)
        kept.append(line)
    return "\n".join(kept).strip(), n


def test_c4_spans_cut_by_edit_give_c4s_text():
    rng = random.Random(3)
    pieces = ["foo", "bar", "baz", "[1]", "[edit]", "[]", "[citation needed]", " ", "\t", "javascript",
              "Privacy Policy", "{", "x" * 14, "The", "end.", "\u00a0", "lorem ipsum"]
    breaks = ["\n", "\r\n", "\r", "\u2028", "\n\n", "\x85"]
    p = C4Params(max_word_length=10)
    sentences = lambda s: max(1, s.count("."))  # noqa: E731
    checked = 0
    for _ in range(3000):
        text = "".join(" ".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) +
                       (rng.choice(breaks) if rng.random() < 0.85 else "") for _ in range(rng.randint(1, 8)))
        spans, doc, left = c4_lines(text, p, sentences)
        ref = c4_reference(text, p, sentences)
        if ref is None:
            assert doc["lorem_ipsum"] + doc["curly_bracket"] == 1
            continue
        assert (left, doc["sentences"]) == ref
        # the edit step, given the spans as span attributes, leaves the same text
        applied, _, _ = apply_spans(text, [(int(s), int(e), rule, "\n" if rule == "newline" else None)
                                           for rule, ss in spans.items() for s, e, _ in ss])
        assert applied == ref[0]
        checked += 1
    assert checked > 1000


def test_edit_step_moves_other_spans_records_and_counts():
    text = "Keep this line here.\nJS: javascript is required here\nSecond kept line [1] here.\n"
    c4 = run(C4, C4Params(), rows(text=[text]))
    # a span attribute of an earlier step (as segment writes): one per line
    starts = [0, text.index("JS:"), text.index("Second")]
    lines = [[float(a), float(text.index("\n", a)), 1.0] for a in starts]
    c4 = c4.append_column("segment__sentences__spans", pa.array([lines], schema.SPANS))
    op = Edit(EditParams(apply=[Apply(spans="c4__lines__newline", replace="\n"), Apply(spans="c4__lines__*")]))
    out = op.process(c4)
    new = out.column("text")[0].as_py()
    assert new == "Keep this line here.\nSecond kept line  here."
    moved = out.column("segment__sentences__spans")[0].as_py()
    assert [new[int(a):int(b)] for a, b, _ in moved] == ["Keep this line here.", "Second kept line  here."]
    record = json.loads(out.column(schema.EDITS)[0].as_py())["edit"]
    assert record["c4__lines__javascript"]["spans"] == 1
    assert record["c4__lines__javascript"]["removed"][0][1] == "JS: javascript is required here\n"
    assert record["c4__lines__citation"]["removed"] == [[38, "[1]"]]
    assert out.column("c4__lines__citation")[0].as_py() == [[38.0, 38.0, 1.0]]  # a marker where it was


def test_edit_that_empties_a_document_drops_it_and_overlaps_are_clipped():
    t = rows(text=["only this", "abcdef"])
    t = t.append_column("pii__regex__email", pa.array([[[0.0, 9.0, 1.0]], [[1.0, 4.0, 1.0], [2.0, 5.0, 1.0]]],
                                                      schema.SPANS))
    out = Edit(EditParams(apply=[Apply(spans="pii__regex__email")])).process(t)
    assert out.column(schema.FATE).to_pylist() == ["drop", None]
    assert out.column(schema.REASON).to_pylist()[0] == "empty_after_edit"
    assert out.column("text").to_pylist()[1] == "af"  # [1,4) cut, then what is left of [2,5): [4,5)


def test_edit_refuses_a_pattern_no_earlier_step_makes():
    from curate.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"apply\[0\]\.spans: 'c4__lines__\*' matches no span attribute"):
        parse_config({"input": {"paths": ["x"]}, "steps": [{"name": "edit", "apply": [{"spans": "c4__lines__*"}]}]})


# ------------------------------------------------------------------------------------------ FineWeb quality
def test_fineweb_quality_by_hand():
    text = "A full sentence, more than thirty characters.\nshort\nshort\nNo stop"
    out = run(FineWebQuality, FineWebQualityParams(), rows(text=[text, "\n\n"]))
    get = lambda k: out.column(f"fineweb_quality__lines__{k}").to_pylist()  # noqa: E731
    assert get("punct_lines_frac") == [1 / 4, None]
    assert get("short_lines_frac")[0] == 3 / 4
    assert get("dup_line_chars_frac")[0] == len("short") / len(text.replace("\n", ""))
    assert get("newlines_per_word")[0] == 3 / len(tokenizer("en").words(text))


# ------------------------------------------------------------------------------------------ URL filter
def test_url_filter_lists_and_rules():
    urls = ["https://www.0-1sex.com/page", "https://sub.0-1sex.com/x", "https://example.org/porn/x",
            "https://example.org/PORN/x", "https://example.org/sexy-babes", "https://en.wikipedia.org/wiki/Sussex",
            "http://[bad url", "https://blocked-site.com/a", "https://sub.example.net/"]
    t = rows(text=[""] * (len(urls) + 1), metadata=[json.dumps({"url": u}) for u in urls] + ["{}"])
    out = run(UrlFilter, UrlFilterParams(extra_domains=("blocked-site.com", "sub.example.net")), t)
    get = lambda k: out.column(f"url_filter__blocklist__{k}").to_pylist()  # noqa: E731
    assert get("domain")[:2] == [1, 1] and get("subdomain")[0] == 0  # the list has 0-1sex.com, not www.
    assert (get("domain")[8], get("subdomain")[8]) == (0, 1)  # a listed host name under an unlisted domain
    assert get("hard_words")[2:4] == [1, 0]  # words are case-sensitive
    assert get("soft_words")[4] >= 2
    assert sum(get(k)[5] for k in ("domain", "subdomain", "url", "hard_words", "soft_words", "subwords")) == 0
    assert get("domain")[6] == 0  # a malformed URL scores, it does not crash
    assert get("domain")[7] == 1  # extra_domains
    assert all(get(k)[9] is None for k in ("domain", "hard_words"))  # no URL: no signal


def test_url_lists_read_as_datatrove_reads_them():
    """The vectorised list reader gives what datatrove's line loop gives (comments by the first character, blank
    lines kept as an empty entry, entries stripped, a last line without its newline); the vectorised hash equals
    hashing each entry alone, and no two bundled domains collide."""
    import io

    from scorers.fineweb.url import bundled, domain_hash, hash_one, list_spans

    raw = b"#comment\n a.com \r\n\nb.org\n #not a comment\n\tc.net\t\nlast.example"
    data, starts, lengths = list_spans(raw)
    got = [data[a:a + n].tobytes().decode() for a, n in zip(starts.tolist(), lengths.tolist())]
    expected = [x.strip() for x in io.StringIO(raw.decode(), newline="") if x[0] != "#"]
    assert got == expected == ["a.com", "", "b.org", "#not a comment", "c.net", "last.example"]
    words = ["a" * n for n in range(20)] + ["é.com", "x" * 300]
    assert list(domain_hash(words)) == sorted({int(domain_hash([w])[0]) for w in words})
    assert len(domain_hash(words)) == len(words)
    assert sorted(hash_one(w) for w in words) == [int(h) for h in domain_hash(words)]
    hashes = bundled()[0]
    assert len(hashes) == 4_558_940 and bool((hashes[1:] > hashes[:-1]).all())


# ------------------------------------------------------------------------------------------ PII
def test_pii_spans_then_edit_replace_as_fineweb():
    text = "Mail jane.doe@example.co.uk or ops@10.0.0.1 host 8.8.8.8, 192.168.1.1 and 999.1.1.1."
    emails, ips = pii_spans(text, PiiParams())
    assert [text[int(a):int(b)] for a, b, _ in emails] == ["jane.doe@example.co.uk", "ops@10.0.0.1"]
    assert [text[int(a):int(b)] for a, b, _ in ips] == ["8.8.8.8", "99.1.1.1"]  # public only; no boundaries
    t = run(Pii, PiiParams(), rows(text=[text]))
    out = Edit(EditParams(apply=[Apply(spans="pii__regex__email", replace="email@example.com"),
                                 Apply(spans="pii__regex__ip", replace="22.214.171.124")])).process(t)
    assert out.column("text")[0].as_py() == ("Mail email@example.com or email@example.com host 22.214.171.124, "
                                             "192.168.1.1 and 922.214.171.124.")


# ------------------------------------------------------------------------------------------ the recipe
def test_fineweb_recipe_runs_on_the_sample_and_counts_every_edit(tmp_path):
    out = tmp_path / "fw"
    r = subprocess.run([sys.executable, "-m", "curate.cli", "run", "recipes/fineweb.yaml", "-o", str(out), "-q"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["balanced"]
    steps = {s["step"]: s for s in stats["steps"]}
    assert steps["filter#2"]["dropped"].get("not_english", 0) > 10
    edited = steps["edit"]["edited"]
    assert edited["c4__lines__too_few_words"]["documents"] > 0
    # every edit is in the per-document record too, with what went
    docs = pq.read_table(out / "stats" / "docs").to_pylist()
    records = [json.loads(d["edits"]) for d in docs if d["edits"]]
    assert sum(1 for r in records if "c4__lines__too_few_words" in r.get("edit", {})) == \
        edited["c4__lines__too_few_words"]["documents"]
    # the text written is the text the edit left: every kept document's C4 spans were applied
    kept = [json.loads(line) for f in (out / "documents").rglob("*.jsonl.gz")
            for line in __import__("gzip").decompress(f.read_bytes()).decode().splitlines()]
    assert kept and all("\n\n" not in d["text"] and d["text"] == d["text"].strip() for d in kept)


# ------------------------------------------------------------------------------------------ per language
def test_thresholds_and_tokenizers_per_language_without_code():
    """FineWeb-2 style: one filter whose numbers depend on the document's language (metadata.language), scorers
    that tokenize each document in its own language and count its own stop words."""
    from operators.filter import Filter, FilterParams

    de = "Der Hund und die Katze sind in dem Haus, und das ist gut so. " * 12
    en = "The dog and the cat are in the house, and that is good with them. " * 12
    meta = [json.dumps({"language": "de"}), json.dumps({"language": "en"}), json.dumps({"language": "tlh"})]
    t = rows(text=[de, en, en], metadata=meta)
    out = run(Gopher, GopherParams(language="auto", stop_words_by_language={"de": ("der", "die", "das", "und")}), t)
    # case-sensitive and distinct: "die das und" / "the and that with"; tlh: spaCy's multi-language rules
    assert out.column("gopher__quality__stop_words").to_pylist() == [3, 4, 4]
    params = FilterParams(values={"default": {"min_stop": 4}, "de": {"min_stop": 3}},
                          rules=[{"reason": "stop_words", "keep": "gopher__quality__stop_words >= min_stop"}])
    Filter.check(params, {c: out.schema.field(c).type for c in out.column_names})
    f = Filter(params)
    f.setup()
    decided = f.process(out)
    assert decided.column(schema.FATE).to_pylist() == [None, None, None]
    assert "min_stop" not in decided.column_names  # the numbers are for deciding only: not a column that flows on
    strict = Filter(FilterParams(values={"default": {"min_stop": 4}},
                                 rules=[{"reason": "stop_words", "keep": "gopher__quality__stop_words >= min_stop"}]))
    strict.setup()
    assert strict.process(out).column(schema.REASON).to_pylist() == ["stop_words", None, None]
    with pytest.raises(ValueError, match="not in values.default"):
        FilterParams(values={"default": {"a": 1}, "de": {"b": 2}}, rules=[{"reason": "x", "keep": "a > 0"}])
