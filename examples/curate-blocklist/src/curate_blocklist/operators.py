"""Two operators of the kinds users write most: a filter that drops documents itself, and a scorer.

Both follow curate's one contract: ``process(table) -> table`` on a batch of live rows, the same rows in the same
order, drops marked (never deleted) with a reason, scores written as ``<name>__<key>`` attribute columns.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.operator import BatchOperator, Params, mark, set_column
from curate import schema


class UrlBlocklistParams(Params):
    domains: list[str] = Field(default_factory=list, description="Blocked domains; subdomains are blocked too.")


class UrlBlocklist(BatchOperator):
    """Drop documents whose URL's host is a blocked domain or one of its subdomains (reason blocked_domain)."""

    name = "url_blocklist"
    Params = UrlBlocklistParams

    def setup(self) -> None:
        self.blocked = {d.lower().strip(".") for d in self.params.domains}  # type: ignore[attr-defined]

    def _blocked(self, url: str | None) -> bool:
        host = (urlsplit(url).hostname or "") if url else ""
        parts = host.split(".")
        return any(".".join(parts[i:]) in self.blocked for i in range(len(parts)))

    def process(self, table: pa.Table) -> pa.Table:
        metas = [json.loads(m) if m else {} for m in table.column("metadata").to_pylist()]
        hit = np.array([self._blocked(m.get("url")) for m in metas], dtype=bool)
        return mark(table, hit, schema.DROP, "blocked_domain")


class CapsRatio(BatchOperator):
    """Share of letters that are capitals (shouting, navigation menus): a score for `filter` to threshold."""

    name = "caps_ratio"
    outputs = {"caps_ratio__letters__caps_ratio": pa.float64()}

    def process(self, table: pa.Table) -> pa.Table:
        ratios = []
        for text in table.column("text").to_pylist():
            letters = [c for c in text or "" if c.isalpha()]
            ratios.append(round(sum(c.isupper() for c in letters) / len(letters), 6) if letters else 0.0)
        return set_column(table, "caps_ratio__letters__caps_ratio", pa.array(ratios, pa.float64()))
