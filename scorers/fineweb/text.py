"""What the FineWeb filters count, defined as datatrove defines it: words, sentences, lines, punctuation.

FineWeb's thresholds were tuned on these counts, so curate's signals use the same definitions, not approximate
ones (a "word" here is a spaCy token, punctuation included, which is why a Gopher alpha-word threshold means
something else over whitespace words):

* words: the tokens of spaCy's rule-based tokenizer for the language (``spacy.blank(lang)``: its tokenizer
  exceptions and prefix/suffix/infix rules, no statistical model), each stripped, empty ones dropped;
* sentences: spaCy's rule-based sentencizer over those tokens (a sentence ends after a token made of sentence-final
  punctuation, once a token follows that is not punctuation);
* punctuation and terminal punctuation: the character sets of datatrove 0.10.1 (``assets/characters.json``).

The same tokens, faster. spaCy's tokenizer cuts the text at runs of whitespace (``str.isspace``) and tokenizes
each piece between them on its own (prefixes, suffixes, infixes, exceptions never reach across whitespace), so a
text's tokens are its pieces' tokens in order, with a token for each run of whitespace other than a single space.
`WordTokenizer` keeps each distinct piece's tokens once per worker process and tokenizes only pieces it has not
seen: 0.15 ms instead of 9 ms for a 2.5 KB page (tested equal to spaCy's own tokenization of whole texts, in
tests/test_fineweb.py and bench/parity.py). Sentences are counted over those tokens with the sentencizer's rule.
"""

from __future__ import annotations

import functools
import json
import os
import re

_ASSETS = os.path.join(os.path.dirname(__file__), "assets")
_WHITESPACE_RUNS = re.compile(r"(\s+)")  # \s is exactly str.isspace, what spaCy's tokenizer cuts at
# distinct pieces a worker keeps the tokens of; past it the table starts again (a long tail of URLs and numbers)
CACHE_PIECES = 500_000


@functools.cache
def characters() -> tuple[frozenset[str], tuple[str, ...]]:
    """(punctuation set, terminal punctuation as a tuple for ``str.endswith``)."""
    with open(os.path.join(_ASSETS, "characters.json"), encoding="utf-8") as f:
        d = json.load(f)
    return frozenset(d["punctuation"]), tuple(d["terminal_punctuation"])


class WordTokenizer:
    """spaCy's rule-based tokenizer and sentencizer for one language (``spacy.blank``: nothing is downloaded)."""

    def __init__(self, language: str = "en"):
        spacy = import_spacy()
        try:
            self.nlp = spacy.blank(language)
        except (ImportError, KeyError, ValueError) as e:  # an unknown code, or one needing an extra package
            raise ValueError(f"no spaCy tokenizer for language {language!r}: {type(e).__name__}: {e}") from None
        self.language = language
        self.punct_chars = frozenset(self.nlp.add_pipe("sentencizer").punct_chars)
        # piece -> ((token text, ends a sentence: in punct_chars, is punctuation), ...)
        self.pieces: dict[str, tuple[tuple[str, bool, bool], ...]] = {}

    def batch(self):
        """A context for tokenizing a batch of documents: the strings spaCy learns in it are forgotten after."""
        return self.nlp.memory_zone()

    def _piece(self, piece: str) -> tuple[tuple[str, bool, bool], ...]:
        found = self.pieces.get(piece)
        if found is None:
            if len(self.pieces) >= CACHE_PIECES:
                self.pieces.clear()
            self.nlp.max_length = len(piece) + 10
            found = self.pieces[piece] = tuple((t.text, t.text in self.punct_chars, t.is_punct)
                                               for t in self.nlp.tokenizer(piece))
        return found

    def prefill(self, texts: list[str | None]) -> None:
        """Tokenize, in one spaCy call, every piece of ``texts`` not seen yet (call inside `batch`): a Doc per
        piece costs more than its tokens (8.8 instead of 2 ms a page on text with many new words)."""
        new: dict[str, None] = {}
        for text in texts:
            for piece in (text or "").split():
                if piece not in self.pieces and piece not in new:
                    new[piece] = None
        if not new:
            return
        if len(self.pieces) + len(new) >= CACHE_PIECES:
            self.pieces.clear()
        pieces = list(new)
        for lo in range(0, len(pieces), 20_000):  # tokenized independently: pieces joined by single spaces
            chunk = pieces[lo:lo + 20_000]
            joined = " ".join(chunk)
            self.nlp.max_length = len(joined) + 10
            starts, at = [], 0
            for piece in chunk:
                starts.append(at)
                at += len(piece) + 1
            found: list[list[tuple[str, bool, bool]]] = [[] for _ in chunk]
            k = 0
            for t in self.nlp.tokenizer(joined):
                while k + 1 < len(starts) and t.idx >= starts[k + 1]:
                    k += 1
                found[k].append((t.text, t.text in self.punct_chars, t.is_punct))
            for piece, tokens in zip(chunk, found):
                self.pieces[piece] = tuple(tokens)

    def words(self, text: str) -> list[str]:
        """The tokens of ``text``, each stripped, empty ones dropped (call inside `batch`)."""
        return [t[0] for piece in text.split() for t in self._piece(piece)]

    def sentences(self, text: str) -> int:
        """How many sentences spaCy's sentencizer finds in ``text`` (call inside `batch`): one at the first token,
        and one more at each token that is neither punctuation nor sentence-final after one that is sentence-final
        (whitespace tokens included: a run of whitespace other than one space is a token, never punctuation)."""
        n = seen_end = 0
        for i, part in enumerate(_WHITESPACE_RUNS.split(text)):
            if not part:
                continue
            if i % 2:  # whitespace: after a token, its first space trails that token; what is left is a token
                rest = part[1:] if n and part[0] == " " else part
                tokens = ((rest, False, False),) if rest else ()
            else:
                tokens = self._piece(part)
            for _text, ends, punct in tokens:
                n = n or 1
                if ends:
                    seen_end = True
                elif seen_end and not punct:
                    n += 1
                    seen_end = False
        return n


def import_spacy():
    """spaCy, imported without thinc's optional torch support where torch is not loaded yet: thinc imports torch
    when it is installed (curate's LLM steps install it), 1.9 of the 3.1 s `import spacy` took in every worker
    process, for nothing the tokenizer uses. torch stays importable afterwards."""
    import sys

    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  (an import of it now fails: thinc sees no torch)
    try:
        import spacy
    finally:
        del sys.modules["torch"]
    return spacy


@functools.cache
def tokenizer(language: str) -> WordTokenizer:
    return WordTokenizer(language)


# `language: auto`: each document's own language (metadata.language, as langid sets it)
AUTO = "auto"


@functools.cache
def tokenizer_or_multilingual(language: str) -> WordTokenizer:
    """The language's tokenizer, or spaCy's multi-language one ("xx") for a language spaCy has none for (or one
    that needs a package not installed: Japanese, Korean, Thai, Vietnamese)."""
    try:
        return tokenizer(language)
    except ValueError:
        return tokenizer("xx")


def row_languages(language: str, metadata: list[str | None]) -> list[str]:
    """Each row's language: ``language``, or with ``auto`` the document's (English where the metadata says none)."""
    if language != AUTO:
        return [language] * len(metadata)
    out = []
    for meta in metadata:
        try:
            lang = json.loads(meta).get("language") if meta else None
        except (ValueError, AttributeError):
            lang = None
        out.append(lang if isinstance(lang, str) and lang else "en")
    return out


def row_tokenizers(languages: list[str]) -> list[WordTokenizer]:
    return [tokenizer_or_multilingual(lang) for lang in languages]


class Batch:
    """Tokenizing a batch of rows, each with its tokenizer: every tokenizer's memory zone open, and every piece
    of each tokenizer's texts tokenized up front (`WordTokenizer.prefill`)."""

    def __init__(self, toks: list[WordTokenizer], texts: list[str | None]):
        self.groups: dict[int, tuple[WordTokenizer, list[str | None]]] = {}
        for tok, text in zip(toks, texts):
            self.groups.setdefault(id(tok), (tok, []))[1].append(text)
        self.zones: list = []

    def __enter__(self) -> "Batch":
        for tok, texts in self.groups.values():
            zone = tok.batch()
            zone.__enter__()
            self.zones.append(zone)
            tok.prefill(texts)
        return self

    def __exit__(self, *exc) -> None:
        for zone in reversed(self.zones):
            zone.__exit__(*exc)


def duplicates(elements: list[str]) -> tuple[int, int]:
    """(elements that repeat an earlier one, their characters): the second and later copies count, the first not."""
    seen: set[str] = set()
    n = chars = 0
    for e in elements:
        if e in seen:
            n += 1
            chars += len(e)
        else:
            seen.add(e)
    return n, chars
