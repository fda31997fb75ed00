"""Page metadata from what the page declares about itself: ``<meta>`` tags, JSON-LD and ``<title>``.

Why not trafilatura's ``extract_metadata`` in the fast engines: on the bench corpus it costs more than the text
extraction itself (4.5 of 7.8 CPU s per 300 pages, most of it htmldate searching the whole page for a date with
dozens of regular expressions, and dateparser). A crawl's page date, title, author and site name are almost always
declared in the head, which costs one pass over a few elements of the tree already parsed for the text. What this
reader does not do: search the body text for a date, or take a title from the first heading. How often it
agrees with trafilatura's values is measured per field by ``bench/extract.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lxml import etree

# <meta> names and properties in the order they are trusted (lower-cased; name= and property= are both read)
_TITLE = ("og:title", "twitter:title", "dc.title", "title")
_SITENAME = ("og:site_name", "application-name")
_AUTHOR = ("author", "article:author", "dc.creator", "citation_author", "parsely-author", "byl", "sailthru.author")
_DATE = ("article:published_time", "og:published_time", "datepublished", "dc.date.issued", "dc.date",
         "citation_publication_date", "publication_date", "pubdate", "date", "sailthru.date", "parsely-pub-date")
_MODIFIED = ("article:modified_time", "og:updated_time", "datemodified")  # only where no publication date is said

_HEAD = etree.XPath("//meta[@content]|//title[not(ancestor::svg)]|//script[@type='application/ld+json']"
                    "|//time[@datetime]")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_SLASH_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_WS = re.compile(r"\s+")
# "Article title | Site", "Site » Article title": a <title> names the site too; the longest part is the page's
_TITLE_PARTS = re.compile(r"\s+[|\u2013\u2014\u00ab\u00bb\u00b7:-]+\s+")
_URL_DATE = re.compile(r"/((?:19|20)\d{2})[/_-]([01]?\d)[/_-]([0-3]?\d)(?:/|$|[_-])")


def _clean(s: str | None) -> str | None:
    s = _WS.sub(" ", s or "").strip()
    return s or None


def normalize_date(s: str | None) -> str | None:
    """YYYY-MM-DD from the ISO-like forms pages declare (2021-03-04T10:00Z, 2021/3/4, 20210304); else None. No
    clock is read (a plausibility bound on "now" would make the output depend on the day it ran)."""
    if not s:
        return None
    for rx in (_ISO_DATE, _SLASH_DATE, _COMPACT_DATE):
        m = rx.search(s)
        if m:
            y, mo, d = (int(g) for g in m.groups())
            if 1990 <= y <= 2100 and 1 <= mo <= 12 and 1 <= d <= 31:
                return f"{y:04d}-{mo:02d}-{d:02d}"
    return None


def _name(v: Any) -> str | None:
    """schema.org Person/Organization (or a list of them, or a bare string) -> a display name."""
    if isinstance(v, str):
        return _clean(v)
    if isinstance(v, dict):
        n = v.get("name")
        return _clean(n) if isinstance(n, str) else None
    if isinstance(v, list):  # one level: a list of lists is no author list
        names = [n for n in (_name(x) for x in v if not isinstance(x, list)) if n]
        return "; ".join(names) or None
    return None


def _ld_objects(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return []
    out: list[dict[str, Any]] = []
    stack = [data]
    while stack and len(out) < 50:
        x = stack.pop(0)
        if isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, dict):
            out.append(x)
            if isinstance(x.get("@graph"), list):
                stack.extend(x["@graph"])
    return out


def _title_from_tag(title: str | None) -> str | None:
    if not title:
        return None
    parts = [p for p in _TITLE_PARTS.split(title) if p]
    return max(parts, key=len) if len(parts) > 1 else title


def _host(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    host = url.split("://", 1)[1].split("/", 1)[0].split("@")[-1].split(":")[0].lower()
    return host.removeprefix("www.") or None


def _url_date(url: str | None) -> str | None:
    m = _URL_DATE.search(url or "")
    return normalize_date("{}-{}-{}".format(*m.groups())) if m else None


def page_metadata(tree: etree._Element, url: str | None = None) -> dict[str, str | None]:
    """title, page_date, author, sitename (None where neither the page nor its URL says). Without a declared site
    name, the URL's host (without www.) stands for it; without a declared date, a /yyyy/mm/dd/ in the URL. Reads,
    never changes, ``tree``."""
    metas: dict[str, str] = {}
    title_tag: str | None = None
    ld: dict[str, str | None] = {}
    time_tag: str | None = None
    for el in _HEAD(tree):
        tag = el.tag
        if tag == "meta":
            key = (el.get("property") or el.get("name") or el.get("itemprop") or "").strip().lower()
            if key and key not in metas:
                v = _clean(el.get("content"))
                if v:
                    metas[key] = v
        elif tag == "title":
            if title_tag is None:
                title_tag = _clean(el.text_content())
        elif tag == "time":
            time_tag = time_tag or normalize_date(el.get("datetime"))
        else:
            for obj in _ld_objects(el.text or ""):  # the first object with a usable value wins, per field
                found = {"title": _clean(str(obj["headline"])) if "headline" in obj else None,
                         "page_date": normalize_date(str(obj["datePublished"])) if "datePublished" in obj else None,
                         "author": _name(obj["author"]) if "author" in obj else None,
                         "sitename": _name(obj["publisher"]) if "publisher" in obj else None}
                for k, v in found.items():
                    if v:
                        ld.setdefault(k, v)

    def first(keys: tuple[str, ...]) -> str | None:
        return next((metas[k] for k in keys if metas.get(k)), None)

    # a profile URL or a handle is not a name (trafilatura's rule too: a name has a space)
    author = next((a for a in (metas.get(k) for k in _AUTHOR)
                   if a and " " in a and not a.startswith(("http://", "https://"))), None)
    date = next((d for d in (normalize_date(metas.get(k)) for k in _DATE) if d), None)
    modified = next((d for d in (normalize_date(metas.get(k)) for k in _MODIFIED) if d), None)
    return {
        "title": first(_TITLE) or ld.get("title") or _title_from_tag(title_tag),
        "page_date": date or ld.get("page_date") or time_tag or modified or _url_date(url),
        "author": author or ld.get("author"),
        "sitename": first(_SITENAME) or ld.get("sitename") or _host(url),
    }
