"""pii: e-mail addresses and public IP addresses as spans, for `edit` to replace, as FineWeb's last step does
(datatrove's PIIFormatter). Scoring only: this step says where; `edit` replaces.

* ``email``: RFC 5322-style addresses (ASCII local part with its special characters, dot-separated labels, or an
  ``[IPv4]`` literal after the ``@``), starting at a word boundary;
* ``ip``: dotted IPv4 addresses (each number 0-255, no boundaries required: ``999.1.1.1`` holds ``99.1.1.1``)
  that Python's ``ipaddress`` calls global (``only_public: false``: any), found in the text as it is once the
  e-mail addresses are replaced (``email_replacement``), as FineWeb replaces e-mails first.

Span attributes ``pii__regex__email`` and ``pii__regex__ip``. FineWeb rotates through several replacement
strings from one document to the next (an order-dependent choice); `edit` replaces with one fixed string each,
so the output does not depend on which documents a worker saw before.
"""

from __future__ import annotations

import ipaddress
import re

import pyarrow as pa
from pydantic import Field

from curate.operator import BatchOperator, Params, set_column
from curate.schema import SPANS

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = re.compile(rf"\b[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:(?:{_LABEL}\.)+{_LABEL}"
                   rf"|\[(?:{_OCTET}\.){{3}}(?:{_OCTET}|[A-Za-z0-9-]*[A-Za-z0-9]:)])")
IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


class PiiParams(Params):
    emails: bool = Field(True, description="Find e-mail addresses.")
    ips: bool = Field(True, description="Find IPv4 addresses.")
    only_public: bool = Field(True, description="Only IP addresses Python's ipaddress calls global.")
    email_replacement: str = Field("email@example.com", description="What `edit` will put in their place (the "
                                   "IP search runs on the text with e-mails replaced by this, as FineWeb's does).")


def _global(ip: str, only_public: bool) -> bool:
    try:
        return not only_public or ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def pii_spans(text: str, p: PiiParams) -> tuple[list[list[float]], list[list[float]]]:
    """(e-mail spans, IP spans) in ``text``'s offsets."""
    emails = [(m.start(), m.end()) for m in EMAIL.finditer(text)] if p.emails else []
    if not p.ips:
        return [[float(a), float(b), 1.0] for a, b in emails], []
    # the text with e-mails replaced, and its stretches that are the original's: (start, end, original start)
    pieces, stretches, at, shift = [], [], 0, 0
    for a, b in emails:
        stretches.append((at + shift, a + shift, at))
        pieces += [text[at:a], p.email_replacement]
        shift += len(p.email_replacement) - (b - a)
        at = b
    stretches.append((at + shift, len(text) + shift, at))
    pieces.append(text[at:])
    replaced = "".join(pieces)
    ips = []
    for m in IPV4.finditer(replaced):
        if not _global(m.group(0), p.only_public):
            continue
        found = next(((r0, o0) for r0, r1, o0 in stretches if r0 <= m.start() and m.end() <= r1), None)
        if found is not None:  # (a match reaching into a replacement is not in the original text)
            ips.append([float(found[1] + m.start() - found[0]), float(found[1] + m.end() - found[0]), 1.0])
    return [[float(a), float(b), 1.0] for a, b in emails], ips


class Pii(BatchOperator):
    """E-mail and public IP address spans (FineWeb's PII step), for `edit` to replace."""

    name = "pii"
    Params = PiiParams
    outputs = {"pii__regex__email": SPANS, "pii__regex__ip": SPANS}

    def process(self, table: pa.Table) -> pa.Table:
        emails, ips = [], []
        for text in table.column("text").to_pylist():
            e, i = pii_spans(text, self.params) if text else (None, None)
            emails.append(e)
            ips.append(i)
        table = set_column(table, "pii__regex__email", pa.array(emails, SPANS))
        return set_column(table, "pii__regex__ip", pa.array(ips, SPANS))
