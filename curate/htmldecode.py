"""Bytes of an HTML page -> text, with the charset decision made here and reported: BOM, then the HTTP header
charset, then ``<meta charset>``, each tried strictly (a mislabelled page falls through to the next), then UTF-8,
then charset-normalizer's guess. In the framework because more than one stage reads raw pages (extract, and the
PreSelect corpus builder's boilerplate documents), and a stage imports no other stage."""

from __future__ import annotations

import codecs
import re

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_:.\-]+)", re.I)
# WHATWG: these labels mean windows-1252 in practice
_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252",
            "ascii": "cp1252", "x-sjis": "shift_jis", "shift-jis": "shift_jis", "windows-31j": "cp932",
            "gb2312": "gb18030", "gbk": "gb18030"}


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    label = _ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str, str]:
    """(text, codec, where the codec came from). Never raises; the last resort replaces bad bytes."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            return body.decode(enc, errors="replace"), enc, "bom"
    candidates: list[tuple[str | None, str]] = []
    if content_type:
        m = _HEADER_CHARSET.search(content_type)
        candidates.append((_codec(m.group(1)) if m else None, "http_header"))
    m2 = _META_CHARSET.search(body[:4096])
    candidates.append((_codec(m2.group(1).decode("ascii", "ignore")) if m2 else None, "meta"))
    candidates.append(("utf-8", "utf8_default"))
    for enc, where in candidates:
        if enc is None:
            continue
        try:
            return body.decode(enc), enc, where
        except (UnicodeDecodeError, LookupError):
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    if best is not None and best.encoding:
        return body.decode(best.encoding, errors="replace"), best.encoding, "detected"
    return body.decode("utf-8", errors="replace"), "utf-8", "replace"
