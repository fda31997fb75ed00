"""The extraction engines. Each runs in the sandbox child on one decoded page and returns ``{"text", "meta",
"path"}``; the step around them (size, charset, content-type checks, budgets, error accounting) is the same for all.

- ``trafilatura``: ``trafilatura.extract`` with its whole cascade (main extractor, then readability and jusText
  as fallbacks, baseline rescue, recall retry) plus ``extract_metadata`` (htmldate's extensive date search).
  Exact: the text equals a direct call on the same decoded string; recipes pin it (FineWeb).
- ``trafilatura_fast``: trafilatura's own ``fast=True`` (no fallback extractors), metadata without the extensive
  date search, one parse for both.
- ``cascade`` (the default): one parse; metadata from the page's declarations (``pagemeta``); trafilatura with
  ``fast=True`` (its main extractor, baseline rescue and recall retry, without the readability and jusText
  fallbacks); then the exact ``trafilatura`` engine, only where a cheap check says that under-delivered: text shorter than trafilatura's own ``MIN_EXTRACTED_SIZE`` (where its fallbacks
  and rescue engage) or the page's largest paragraph cluster (``main_block_chars``, readability's candidate in
  one pass) clearly longer than the text (where readability's output would win; its other triggers, a body
  without paragraph text or dominated by tables, are not checked). Its empty outputs are exactly trafilatura's:
  a page is only ever left empty by the exact engine. ``path`` (the document's ``metadata.extractor``) is
  ``cascade:fast`` or ``cascade:exact``. Why this shape, and what it costs and keeps,
  measured: docs/design/extraction-engines.md, ``bench/extract.py``.
"""

from __future__ import annotations

import collections
import re
from typing import Any

ENGINES = ("cascade", "trafilatura", "trafilatura_fast")
FIELDS = ("title", "page_date", "author", "sitename")  # the metadata keys a page with text always has

# trafilatura's settings.cfg MIN_EXTRACTED_SIZE: under it, its cascade tries fallbacks and the baseline rescue
MIN_TEXT_CHARS = 250
# escalate when the largest paragraph cluster is more than this many times the fast text (readability replaces
# trafilatura's text when its own is over 2x longer; 1.5 leaves a margin for what the one-pass estimate misses)
BLOCK_RATIO = 1.5
# paragraphs under this many characters do not count towards a cluster (captions, buttons, dates)
MIN_PARAGRAPH_CHARS = 25

_WS = re.compile(r"\s+")
_PARAGRAPHS = None  # compiled lazily in the child (lxml import)
_NEVER_TEXT = None  # elements whose text trafilatura never outputs (script: not JSON-LD, which it reads)
_PARSER = None


def _parse(html: str) -> Any:
    """trafilatura's own ``load_html`` (its decoding, repairs and rejection of non-HTML), with its parser's options
    but lxml's C-level element class lookup instead of lxml.html's Python one: a Python call for every element
    proxy made, 6% of the fast path's time. Same tree, same classes for elements (HtmlElement); form elements
    lose lxml.html's form helpers, which trafilatura does not use. Equality with trafilatura's text is tested."""
    global _PARSER
    import trafilatura.utils as tu

    if _PARSER is None:
        from lxml import etree, html as lhtml

        _PARSER = lhtml.HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8",
                                   remove_comments=True, remove_pis=True)
        _PARSER.set_element_class_lookup(etree.ElementDefaultClassLookup(
            element=lhtml.HtmlElement, comment=lhtml.HtmlComment, pi=lhtml.HtmlProcessingInstruction,
            entity=lhtml.HtmlEntity))
    saved, tu.HTML_PARSER = tu.HTML_PARSER, _PARSER  # load_html reads the module's parser at call time
    try:
        return tu.load_html(html)
    finally:
        tu.HTML_PARSER = saved


def _drop_never_text(tree: Any) -> None:
    """Remove scripts (not JSON-LD) and styles, whose text every stage of trafilatura deletes or ignores (its
    cleaning, its baseline and its page-length measure alike), keeping tails as its own deletion does: a smaller
    tree for every one of its XPath passes and its tree copies. Not ``template`` (trafilatura keeps its text),
    ``noscript`` or ``svg`` (its balanced mode reads the raw tree, where they still count)."""
    global _NEVER_TEXT
    if _NEVER_TEXT is None:
        from lxml import etree

        _NEVER_TEXT = etree.XPath("//script[not(@type='application/ld+json')]|//style")
    for el in _NEVER_TEXT(tree):
        parent = el.getparent()
        if parent is None:
            continue
        if el.tail:
            prev = el.getprevious()
            if prev is not None:
                prev.tail = (prev.tail or "") + el.tail
            else:
                parent.text = (parent.text or "") + el.tail
        parent.remove(el)


def main_block_chars(tree: Any) -> float:
    """Characters in the page's largest paragraph cluster: each paragraph (``p``, ``pre``, ``td``, ``blockquote``,
    or a ``div`` holding text of its own, as readability treats it) of at least ``MIN_PARAGRAPH_CHARS`` counts
    fully to its parent and half to its grandparent (readability's candidate scoring, by length only); the best
    container's total. Reads, never changes, ``tree``."""
    global _PARAGRAPHS
    if _PARAGRAPHS is None:
        from lxml import etree

        _PARAGRAPHS = etree.XPath("//p|//pre|//td|//blockquote|//div[text()[string-length(normalize-space(.)) >= "
                                  f"{MIN_PARAGRAPH_CHARS}]]")
    acc: dict[Any, float] = collections.defaultdict(float)
    for p in _PARAGRAPHS(tree):
        n = len(_WS.sub(" ", p.text_content()).strip())
        if n < MIN_PARAGRAPH_CHARS:
            continue
        parent = p.getparent()
        if parent is None:
            continue
        acc[parent] += n
        grand = parent.getparent()
        if grand is not None:
            acc[grand] += n / 2
    return max(acc.values(), default=0.0)


def _trafilatura_text(html_or_tree: Any, url: str | None, opts: dict[str, Any], fast: bool) -> str | None:
    import trafilatura

    if opts.get("deduplicate"):  # repeated segments within this page only: nothing carries over between pages
        from trafilatura.deduplication import LRU_TEST

        LRU_TEST.clear()
    return trafilatura.extract(html_or_tree, url=url, output_format="txt", fast=fast, **opts)


def _trafilatura_meta(html_or_tree: Any, url: str | None, extensive: bool) -> dict[str, Any]:
    from trafilatura.metadata import extract_metadata

    # the exact engine calls it as before (trafilatura 1.x, pinned by recipes, names the switch differently)
    doc = (extract_metadata(html_or_tree, default_url=url) if extensive
           else extract_metadata(html_or_tree, default_url=url, extensive=False))
    if doc is None:  # the same keys on every document (null: unknown)
        return dict.fromkeys(FIELDS)
    return {"title": doc.title, "page_date": doc.date, "author": doc.author, "sitename": doc.sitename}


def run_trafilatura(payload: dict[str, Any]) -> dict[str, Any]:
    """The exact engine: what a direct ``trafilatura.extract`` call returns on the same decoded string."""
    url, opts = payload.get("url"), payload["options"]
    text = _trafilatura_text(payload["html"], url, opts, fast=False)
    meta = _trafilatura_meta(payload["html"], url, True) if payload.get("with_metadata") and text else {}
    return {"text": text, "meta": meta, "path": "trafilatura"}


def run_trafilatura_fast(payload: dict[str, Any]) -> dict[str, Any]:
    from trafilatura.utils import load_html

    url, opts = payload.get("url"), payload["options"]
    tree = load_html(payload["html"])
    if tree is None:
        return {"text": None, "meta": {}, "path": "trafilatura_fast"}
    meta = _trafilatura_meta(tree, url, False) if payload.get("with_metadata") else {}
    text = _trafilatura_text(tree, url, opts, fast=True)
    return {"text": text, "meta": meta if text else {}, "path": "trafilatura_fast"}


def run_cascade(payload: dict[str, Any]) -> dict[str, Any]:
    from operators.extract.pagemeta import page_metadata

    url, opts = payload.get("url"), payload["options"]
    tree = _parse(payload["html"])
    if tree is None:  # nothing lxml can read: the exact engine decides (and counts) it
        return run_trafilatura(payload)
    meta = page_metadata(tree, url) if payload.get("with_metadata") else {}
    _drop_never_text(tree)
    block = main_block_chars(tree)
    text = _trafilatura_text(tree, url, opts, fast=True)
    n = len(text or "")
    if n < MIN_TEXT_CHARS or block > BLOCK_RATIO * n:
        text = _trafilatura_text(payload["html"], url, opts, fast=False)
        return {"text": text, "meta": meta if text else {}, "path": "cascade:exact"}
    return {"text": text, "meta": meta, "path": "cascade:fast"}


_RUN = {"trafilatura": run_trafilatura, "trafilatura_fast": run_trafilatura_fast, "cascade": run_cascade}


def extract_page(payload: dict[str, Any]) -> dict[str, Any]:
    """Runs in the sandbox child: ``payload["engine"]`` (default ``trafilatura``) on one decoded page. Metadata
    values that are empty become None, and a page with text always has the same four keys."""
    res = _RUN[payload.get("engine", "trafilatura")](payload)
    if payload.get("with_metadata") and res["text"]:
        res["meta"] = {k: res["meta"].get(k) or None for k in FIELDS}
    else:
        res["meta"] = {}
    return res
