"""A local DuckDB copy of a run's per-document stats, grown file by file as the run writes parts.

Why a copy, and why DuckDB: a 10M-document run has ~10,000 stats parquet files (one per part of
input.docs_per_block documents). Scanning them for every view costs ~0.4 ms of footer and metadata work per file
before any data: ~4 s a query at 10M documents, measured (bench/dashboard.py), past the 1 s a view may take. So the
dashboard ingests each file once, when it appears, into a DuckDB table on local disk (a cache outside the output,
which stays read-only) and answers views from it: DuckDB's columnar storage reads only the columns a query names
(projection) and skips row groups by min/max (predicate pushdown), runs group-bys in parallel, and spills to disk
under ``memory_limit``, so the server's memory stays bounded however large the run. pyarrow datasets scan parquet
as well but group and bin in memory after materialising the projected columns (the baseline the benchmark
measures), and have no persistent store to make repeated queries cheap.

Ingestion reads files with pyarrow through ``curate.storage`` (so s3:// and gs:// need no DuckDB extension,
which this machine could not download) in batches; columns that appear later (a step added a score) are added to
the table. The cache is keyed by the output root and the run's start time: a rerun with --overwrite starts anew.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from curate.dashboard.run import Run

BATCH_FILES = 128
# bookkeeping columns that are no score: never offered as a histogram
NOT_SCORES = {"ord", "offset", "chars"}


def default_cache_dir() -> Path:
    return Path(os.environ.get("CURATE_CACHE") or Path.home() / ".cache" / "curate") / "dashboard"


def quote(name: str) -> str:
    """A column name as a DuckDB identifier (names come from the parquet, never from the page)."""
    return '"' + name.replace('"', '""') + '"'


class DocIndex:
    """The ``docs`` table (every stats parquet row, plus ``_file``) and ``files`` (what was ingested)."""

    def __init__(self, run: Run, cache_dir: Path, started: str, memory_limit: str = "256MB", threads: int = 2):
        key = hashlib.sha256(f"{run.root}\n{started}".encode()).hexdigest()[:20]
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / f"{key}.duckdb"
        self.run = run
        config = {"memory_limit": memory_limit, "threads": threads}
        try:
            self.con = duckdb.connect(str(self.path), config=config)
        except duckdb.IOException:
            # another process (a second dashboard, `curate report` beside a running dashboard) holds this run's
            # index: DuckDB allows one writer per file, so this process builds its own, removed when it exits
            private = Path(tempfile.mkdtemp(prefix="curate-dashboard-"))
            atexit.register(shutil.rmtree, private, True)
            self.path = private / self.path.name
            self.con = duckdb.connect(str(self.path), config=config)
        self.con.execute("CREATE TABLE IF NOT EXISTS files (name VARCHAR PRIMARY KEY, size BIGINT, rows BIGINT)")
        self.lock = threading.Lock()  # one ingester at a time; readers use their own cursors
        self.total_files = 0
        self.error: str | None = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self.con.cursor()
        cur.execute("SET enable_progress_bar = false")  # DuckDB draws one on stdout for queries over 2 s
        return cur

    def has_docs(self, con: duckdb.DuckDBPyConnection | None = None) -> bool:
        return bool((con or self.cursor()).execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'docs'").fetchone()[0])

    def columns(self, con: duckdb.DuckDBPyConnection | None = None) -> dict[str, str]:
        con = con or self.cursor()
        if not self.has_docs(con):
            return {}
        rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_name = 'docs' ORDER BY ordinal_position").fetchall()
        return {n: t for n, t in rows}

    def coverage(self) -> dict[str, int]:
        done, rows = self.cursor().execute("SELECT count(*), coalesce(sum(rows), 0) FROM files").fetchone()
        return {"files_indexed": int(done), "files_total": max(self.total_files, int(done)), "rows": int(rows)}

    def refresh(self, max_batches: int | None = None) -> dict[str, int]:
        """Ingest stats files not seen yet (by name; a rewritten file of another size replaces its rows)."""
        if not self.lock.acquire(blocking=False):
            return self.coverage()  # another thread is ingesting
        try:
            files = self.run.doc_stats_files()
            self.total_files = len(files)
            seen = dict(self.cursor().execute("SELECT name, size FROM files").fetchall())
            todo = [(p, s) for p, s in files if seen.get(p) != s]
            for i in range(0, len(todo), BATCH_FILES):
                if max_batches is not None and i // BATCH_FILES >= max_batches:
                    break
                self._ingest(todo[i:i + BATCH_FILES], replace={p for p, _ in todo[i:i + BATCH_FILES] if p in seen})
            self.error = None
        except Exception as e:  # a broken file must not stop the server: the page shows this line
            self.error = f"indexing the per-document stats failed: {type(e).__name__}: {e}"
        finally:
            self.lock.release()
        return self.coverage()

    def _ingest(self, batch: list[tuple[str, int]], replace: set[str]) -> None:
        tables, sizes = [], []
        for path, size in batch:
            with self.run.open(path) as f:
                t = pq.read_table(f)
            tables.append(t.append_column("_file", pa.array([path] * t.num_rows, pa.string())))
            sizes.append((path, size, t.num_rows))
        table = pa.concat_tables(tables, promote_options="permissive")
        con = self.cursor()
        con.execute("BEGIN TRANSACTION")
        try:
            con.register("batch", table)
            if not self.has_docs(con):
                con.execute("CREATE TABLE docs AS SELECT * FROM batch LIMIT 0")
            have = self.columns(con)
            for name, typ, *_ in con.execute("DESCRIBE SELECT * FROM batch").fetchall():
                if name not in have:  # a column later parts have (a step that scores only some batches)
                    con.execute(f"ALTER TABLE docs ADD COLUMN {quote(name)} {typ}")
            for path in replace:
                con.execute("DELETE FROM docs WHERE _file = ?", [path])
                con.execute("DELETE FROM files WHERE name = ?", [path])
            con.execute("INSERT INTO docs BY NAME SELECT * FROM batch")
            con.executemany("INSERT INTO files VALUES (?, ?, ?)", sizes)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("batch")

    def score_columns(self) -> list[str]:
        """Numeric columns a histogram can show: scores and signals, plus characters."""
        numeric = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER")
        cols = [c for c, t in self.columns().items()
                if t.upper() in numeric and c not in NOT_SCORES and not c.startswith("_")]
        return ["chars", *sorted(cols)] if "chars" in self.columns() else sorted(cols)

    def close(self) -> None:
        self.con.close()


def query(index: DocIndex, sql: str, params: list[Any] | None = None) -> list[tuple]:
    return index.cursor().execute(sql, params or []).fetchall()
