"""extract: main text of HTML pages (trafilatura, or the faster ``cascade`` engine built on it), in a killable
sandbox with a per-document deadline.

Checks before extraction, each a counted drop: content type not HTML (``not_html``), binary payload
(``binary_body``), empty payload (``empty_page``), payload over ``max_bytes`` (``too_large``). Then the bytes are
decoded here, not by trafilatura, so the charset decision is ours and visible: BOM, then the HTTP header
charset, then ``<meta charset>``, each tried strictly (a mislabelled page falls through to the next), then
UTF-8, then charset-normalizer's guess. The decoded page goes to the chosen engine (``engines.py``): with
``engine: trafilatura`` to ``trafilatura.extract(output_format="txt")`` with exactly the options below, so the
text equals a direct trafilatura call on the same decoded string. Every engine gets the same checks, budgets and
error accounting; which path produced a page's text is in its metadata (``extractor``).

Rows that already have text (WET conversion records, jsonl/parquet documents) pass through untouched.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from curate import schema
from curate.htmldecode import decode_html
from curate.operator import BatchOperator, Params, mark, set_column
from operators.extract.engines import extract_page

__all__ = ["Extract", "ExtractParams", "decode_html", "extract_page"]

def _mime(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _looks_like_html(body: bytes) -> bool:
    head = body[:2048].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body", b"<!--")) or b"<html" in head


def _is_binary(body: bytes) -> bool:
    head = body[:4096]
    return b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def pinned_trafilatura(version: str) -> Path:
    """The folder holding trafilatura ``version`` and what it pins (infra/extractors/trafilatura-<v>.txt), installed
    beside the environment: ``$CURATE_EXTRACTORS/trafilatura-<v>`` if that is set, else
    ``<sys.prefix>/share/curate/extractors/trafilatura-<v>``. Only the sandbox's child process puts it on its path."""
    root = Path(os.environ.get("CURATE_EXTRACTORS") or Path(sys.prefix) / "share" / "curate" / "extractors")
    folder = root / f"trafilatura-{version}"
    if not (folder / "trafilatura").is_dir():
        raise FileNotFoundError(f"trafilatura {version} is not installed at {folder}: `make install` installs the "
                                f"versions infra/extractors/ lists (pip install --no-deps --target {folder} -r "
                                f"infra/extractors/trafilatura-{version}.txt)")
    return folder


class ExtractParams(Params):
    engine: Literal["cascade", "trafilatura", "trafilatura_fast"] = Field(
        "cascade", description="cascade: trafilatura's main extractor without its fallbacks, the whole trafilatura "
        "only on pages where a cheap check says the main extractor under-delivered, metadata from the page's own "
        "declarations (over 3x trafilatura's pages per CPU second on the bench corpus, the same text there). "
        "trafilatura: exact trafilatura.extract + extract_metadata (recipes that must match a published pipeline). trafilatura_fast: "
        "trafilatura's fast=True. Measured: bench/extract.py.")
    timeout_s: float = Field(10.0, gt=0, description="Per-document CPU-time budget of the sandbox child (CPU "
                             "seconds, so the decision does not depend on machine load); killed past it.")
    hang_timeout_s: float = Field(300.0, gt=0, description="Wall-clock backstop per document for a child that "
                                  "hangs without using CPU (blocked); far above any page's cost.")
    max_bytes: int = Field(3_000_000, gt=0, description="Larger HTML payloads are dropped as `too_large`.")
    content_types: list[str] = Field(
        ["text/html", "application/xhtml+xml"], description="MIME types extracted; others are dropped `not_html`."
    )
    favor_precision: bool = Field(False, description="trafilatura: prefer less text, less boilerplate.")
    favor_recall: bool = Field(False, description="trafilatura: prefer more text.")
    include_comments: bool = Field(False, description="trafilatura: keep the comment section.")
    include_tables: bool = Field(True, description="trafilatura: keep table text.")
    deduplicate: bool = Field(False, description="trafilatura: drop text segments repeated within the page "
                              "(its cache is cleared for every page, so a page's text never depends on which pages "
                              "a worker extracted before).")
    pass_url: bool = Field(True, description="Give trafilatura the page's URL (FineWeb's extraction does not).")
    trafilatura_version: str | None = Field(
        None, description="Run this trafilatura version instead of the installed one, from its own folder (one of "
        "infra/extractors/, installed by make install and the image): \"1.11.0\" is what datatrove 0.10.1 runs "
        "for FineWeb. null: the installed version.")
    with_metadata: bool = Field(True, description="Add title, page date, author, site name to metadata.")
    memory_limit_mb: int = Field(2048, ge=0, description="Address-space cap of the sandbox child (0: none).")

    @model_validator(mode="after")
    def _pinned_version_is_exact(self) -> "ExtractParams":
        if self.trafilatura_version is not None and self.engine != "trafilatura":
            raise ValueError(f"trafilatura_version pins the exact engine: set engine: trafilatura (not "
                             f"{self.engine!r}) with it")
        return self

    def trafilatura_options(self) -> dict[str, bool]:
        """The keyword arguments every engine passes to ``trafilatura.extract`` (bench/extract.py uses them too)."""
        return {"favor_precision": self.favor_precision, "favor_recall": self.favor_recall,
                "include_comments": self.include_comments, "include_tables": self.include_tables,
                "deduplicate": self.deduplicate}


class Extract(BatchOperator):
    """Main-text extraction of HTML payloads (trafilatura or the cascade over it) with content-type, size and
    charset handling."""

    name = "extract"
    Params = ExtractParams
    outputs: dict[str, pa.DataType] = {}

    def setup(self) -> None:
        from operators.extract.sandbox import Sandbox

        v = self.params.trafilatura_version
        self.sandbox = Sandbox("operators.extract.engines", "extract_page", self.params.memory_limit_mb,
                               path_first=[str(pinned_trafilatura(v))] if v else None)
        self.sandbox.start()
        self.trafilatura_options = self.params.trafilatura_options()

    def teardown(self) -> None:
        self.sandbox.kill()

    def process(self, table: pa.Table) -> pa.Table:
        from operators.extract.sandbox import SandboxCrashed, SandboxTimeout

        p: ExtractParams = self.params  # type: ignore[assignment]
        allowed = set(p.content_types)
        raws = table.column(schema.RAW).to_pylist() if schema.RAW in table.column_names else [None] * table.num_rows
        texts = table.column("text").to_pylist()
        metas = table.column("metadata").to_pylist()
        n = table.num_rows
        fates: list[tuple[str, str, str | None] | None] = [None] * n
        for i in range(n):
            body = raws[i]
            if body is None:
                if texts[i] is None:
                    fates[i] = (schema.ERROR, "no_payload", None)
                continue  # already text: pass through
            meta = json.loads(metas[i]) if metas[i] else {}
            ctype = meta.get("content_type")
            mime = _mime(ctype)
            if not body:
                fates[i] = (schema.DROP, "empty_page", None)
            elif len(body) > p.max_bytes:
                fates[i] = (schema.DROP, "too_large", f"{len(body)} bytes")
            elif _is_binary(body):
                fates[i] = (schema.DROP, "binary_body", mime)
            elif mime not in allowed and not (mime is None and _looks_like_html(body)):
                fates[i] = (schema.DROP, "not_html", mime)
            else:
                html, enc, enc_src = decode_html(body, ctype)
                meta.update(charset=enc, charset_source=enc_src)
                try:
                    res = self.sandbox.call({"html": html, "url": meta.get("url") if p.pass_url else None,
                                             "engine": p.engine, "options": self.trafilatura_options,
                                             "with_metadata": p.with_metadata}, p.timeout_s, p.hang_timeout_s)
                except SandboxTimeout as e:
                    fates[i] = ((schema.ERROR, "extract_hung", f"> {p.hang_timeout_s:g} s wall, idle") if e.hung
                                else (schema.ERROR, "extract_timeout", f"> {p.timeout_s:g} CPU s"))
                except SandboxCrashed as e:
                    fates[i] = (schema.ERROR, "extract_crashed", str(e))
                except RuntimeError as e:
                    fates[i] = (schema.ERROR, "extract_exception", str(e))
                else:
                    if res["text"] and res["text"].strip():
                        texts[i] = res["text"]
                        meta.update(res["meta"], extractor=res["path"])
                    else:
                        fates[i] = (schema.DROP, "no_text_extracted", None)
                metas[i] = json.dumps(meta, ensure_ascii=False, sort_keys=True)
        table = set_column(table, "text", pa.array(texts, pa.string()))
        table = set_column(table, "metadata", pa.array(metas, pa.string()))
        for fate in (schema.DROP, schema.ERROR):
            mask = [f is not None and f[0] == fate for f in fates]
            if any(mask):
                table = mark(table, mask, fate, [f[1] if f else None for f in fates],
                             [f[2] if f else None for f in fates])
        # the payload is consumed: free it before the next step
        return set_column(table, schema.RAW, pa.nulls(n, pa.large_binary()))
