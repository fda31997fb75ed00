"""The row that flows between operators: a Dolma document plus attribute and bookkeeping columns.

Arrow record batches (pyarrow.Table) are the unit between operators. A row is

* the Dolma document fields: ``id``, ``text``, ``source``, ``created``, ``metadata`` (a JSON string, because
  metadata keys differ per input format and Arrow struct columns would not line up across blocks);
* attribute columns named as Dolma taggers name their keys, ``<set>__<tagger>__<key>``
  (``quality_signals__heuristics__word_count``, ``segment__sentences__spans``): numbers, or spans
  ``[start, end, value]``. ``<set>`` is the step (the ``attributes/<set>/`` folder), ``<tagger>`` the method.
  They are written to Dolma attribute files under the same names, so a filter expression, an attribute file and
  the stats parquet all speak of the same thing;
* stats-only columns ``_stat_<name>`` (a dedup cluster id): per-document facts that are not scores, written to
  the per-document stats parquet as ``<name>`` and never to attribute files (Dolma attribute values are numbers);
* bookkeeping columns starting with ``_`` that never reach the document files: provenance (``_file``, ``_ord``),
  the raw payload (``_raw``), the row's fate (``_fate``, ``_reason``, ``_detail``, ``_step``) and the record of
  the edits steps made to its text (``_edits``).

Rows are never deleted inside the pipeline: a dropped or failed document becomes a *tombstone* (fate set, text
and payload nulled) that travels on to the writer. That is what makes "every input record is accounted for"
checkable from the output alone: the per-document stats parquet has exactly one row per input document.
"""

from __future__ import annotations

import datetime
import hashlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Dolma document fields, in the order they are written.
DOC_FIELDS = ("id", "text", "source", "added", "created", "metadata")

# Provenance: the input file (as given after glob expansion) and the record's ordinal within it (0-based,
# counting emitted documents). Together they are unique within a run and stable across runs.
FILE = "_file"
ORD = "_ord"
# Raw payload (HTML bytes) waiting for extraction; dropped once the text is extracted.
RAW = "_raw"
# Fate of a row: null while alive, "drop" (a decision: filter, too large, not HTML) or "error" (something broke).
FATE = "_fate"
REASON = "_reason"  # machine-readable reason, e.g. "too_short", "extract_timeout"
DETAIL = "_detail"  # short human-readable detail for errors (exception message, truncated)
STEP = "_step"  # the step that decided the fate
BORN = "_born"  # the step that created the row (null: read from the input), e.g. synthetic rephrasings
# What steps cut out of or replaced in the text (JSON: {step: {rule: {"spans", "chars", "removed"}}}): an edited
# document is counted per step and rule like a dropped one is per reason (`operators/edit.py` writes it).
EDITS = "_edits"
# Records in the row's part (its reader block: input.docs_per_block, fewer at the end of a file): the writer
# knows a part is whole when it holds that many distinct ordinals, however Ray cut or merged the blocks.
PART_ROWS = "_part_rows"

DROP = "drop"
ERROR = "error"

BOOKKEEPING = (FILE, ORD, RAW, FATE, REASON, DETAIL, STEP, BORN, PART_ROWS, EDITS)

# A span attribute: per document a list of [start, end, value] (character offsets into the text, as Dolma's
# attribute files hold them).
SPANS = pa.list_(pa.list_(pa.float64()))

BASE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("source", pa.string()),
        pa.field("created", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field(FILE, pa.string()),
        pa.field(ORD, pa.int64()),
        pa.field(RAW, pa.large_binary()),
        pa.field(FATE, pa.string()),
        pa.field(REASON, pa.string()),
        pa.field(DETAIL, pa.string()),
        pa.field(STEP, pa.string()),
        pa.field(BORN, pa.string()),
        pa.field(PART_ROWS, pa.int64()),
        pa.field(EDITS, pa.string()),
    ]
)


STAT_PREFIX = "_stat_"  # stats-only columns: _stat_<name> -> stats parquet column <name>


def is_attribute(column: str) -> bool:
    """Attribute columns are ``<set>__<tagger>__<key>``; bookkeeping columns start with ``_``."""
    return "__" in column and not column.startswith("_")


def attribute_set(column: str) -> str:
    return column.split("__", 1)[0]


def check_attribute_name(column: str, set_name: str) -> str | None:
    """Why ``column`` is not a valid attribute name for step ``set_name`` (None: it is)."""
    parts = column.split("__")
    if len(parts) != 3 or not all(re.fullmatch(r"[A-Za-z0-9_]+", x) and not x.startswith("_") for x in parts):
        return f"{column!r}: attribute names are <set>__<tagger>__<key> (letters, digits, single underscores)"
    if parts[0] != set_name:
        return f"{column!r}: the attribute set (first part) must be the step name {set_name!r}"
    return None


def stable_id(*parts: str | int) -> str:
    """Content-independent id from provenance (file + position), for records that carry no id of their own.

    sha1 over the parts joined by NUL; 32 hex characters are plenty for uniqueness within a corpus.
    """
    h = hashlib.sha1("\x00".join(str(p) for p in parts).encode("utf-8"))
    return h.hexdigest()[:32]


def conform(table: pa.Table) -> pa.Table:
    """Add any missing base column as nulls and put base columns first, attributes after (sorted).

    Readers of different formats emit different subsets; conforming keeps block schemas identical so Ray can
    concatenate them and parquet files of different parts read as one dataset.
    """
    n = table.num_rows
    cols = []
    names = []
    for field in BASE_SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type)
        else:
            col = pa.nulls(n, field.type)
        cols.append(col)
        names.append(field.name)
    extra = sorted(c for c in table.column_names if c not in BASE_SCHEMA.names)
    for c in extra:
        cols.append(table.column(c))
        names.append(c)
    return pa.Table.from_arrays(cols, names=names)


# A document's node id: its input file's index in the sorted input list (high bits) and its ordinal in the file
# (low bits). Stable across runs and partitionings, so whole-dataset steps can key decisions by it.
NODE_SHIFT = 32


def node_ids(table: pa.Table, file_index: dict[str, int]) -> np.ndarray:
    """Node ids of the rows of ``table`` (see NODE_SHIFT); ``file_index`` is RunContext.file_index."""
    files = table.column(FILE).to_pylist()
    idx = np.fromiter((file_index[f] for f in files), dtype=np.int64, count=len(files))
    return (idx << NODE_SHIFT) | table.column(ORD).to_numpy().astype(np.int64)


def live_mask(table: pa.Table) -> np.ndarray:
    """Rows no step has dropped or failed yet."""
    return pc.is_null(table.column(FATE)).to_numpy(zero_copy_only=False)


_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def canonical_time(value: str | None) -> str | None:
    """An ISO-8601 time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds; a time without zone is taken as UTC);
    None when it does not parse. One format for every document: Arrow's JSON reader (datasets, polars, duckdb)
    types the column from the first values it sees, and a second format in a later file fails the load."""
    if not value:
        return None
    if _CANONICAL_TIME.fullmatch(value):
        return value
    try:
        t = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
