"""The views: each a function of (stats.json, the progress log, the document index) to the JSON the page draws.

Counts per step come from stats.json (the runner's balanced counts); everything per document (characters,
languages, score histograms, dedup clusters, the document browser) is one DuckDB query over the index. The
views know stats formats, not stages: "dedup" is any step whose info has ``clusters_by_size``, "shards" is
manifest.json, "rephrase" is documents created by a step (``born``), by the ``<step>__style`` column if any.
"""

from __future__ import annotations

import json

import math
import re
import time
from datetime import datetime, timezone
from typing import Any

from curate.dashboard.index import DocIndex, query, quote
from curate.dashboard.run import Run, RunError

# a live run whose stats.json has not changed for this long has probably lost its driver
STALE_S = 120.0
# a live run whose counters have not moved for this long is flagged as stalled
STALLED_S = 600.0
BINS = 40
PAGE = 50
_CMP = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)")


def _age_s(iso: str | None) -> float | None:
    try:
        t = datetime.strptime(iso or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return max(0.0, time.time() - t.timestamp())


def summary(run: Run, index: DocIndex | None) -> dict[str, Any]:
    """Status, totals, the current step, time left and health flags: what the header shows on every view."""
    stats = run.stats()
    lines, bad_lines = run.progress()
    t = stats["totals"]
    flags = []
    status = stats["status"]
    age = _age_s(stats.get("updated"))
    if status == "running" and age is not None and age > STALE_S:
        flags.append(f"stats.json last updated {age:.0f} s ago: the run's driver may have died "
                     f"(`curate run --resume` continues a killed run)")
    still = _still_for(lines)
    if status == "running" and still is not None and still >= STALLED_S:
        flags.append(f"no progress for {still:.0f} s: no step has processed a document since")
    if status == "failed":
        flags.append(f"the run failed: {stats.get('error') or 'see the driver log'}")
    if not t.get("balanced", True):
        flags.append("counts do not balance: documents in != out + dropped + errors")
    timing = stats.get("timing") or {}
    if timing.get("partial"):  # seconds per step only: counts and documents never depend on them
        flags.append(f"timing figures are partial: {timing.get('why') or 'some were lost'}")
    inputs = stats.get("inputs") or {}
    files, read = inputs.get("files") or 0, inputs.get("files_read") or 0
    eta = None
    if status == "running" and files and 0 < read < files:
        eta = round(stats["elapsed_s"] * (files - read) / read, 1)
    out = {"root": run.root, "status": status, "started": stats.get("started"), "updated": stats.get("updated"),
           "updated_age_s": None if age is None else round(age, 1), "elapsed_s": stats.get("elapsed_s"),
           "totals": t, "inputs": {"files": files, "files_read": read},
           "current_step": _current_step(stats, lines) if status == "running" else None,
           "eta_s": eta, "eta_basis": "input files read" if eta is not None else None, "flags": flags,
           "progress_lines_unreadable": bad_lines, "config_path": (stats.get("config") or {}).get("path"),
           "cluster": stats.get("cluster") or {}}
    if index is not None:
        out["index"] = index.coverage()
        out["index"]["error"] = index.error
    return out


def _still_for(lines: list[dict[str, Any]]) -> float | None:
    """Seconds since the counters (rows processed per step, documents in/out) last changed."""
    if not lines:
        return None

    def state(d: dict[str, Any]) -> tuple:
        return (d.get("documents_in"), d.get("documents_out"), tuple(sorted((d.get("rows_processed") or {}).items())))

    last = state(lines[-1])
    for d in reversed(lines):
        if state(d) != last:
            return lines[-1]["elapsed_s"] - d["elapsed_s"]
    return lines[-1]["elapsed_s"] - lines[0]["elapsed_s"]


def _current_step(stats: dict[str, Any], lines: list[dict[str, Any]]) -> str | None:
    """The step whose processed rows moved most recently; else the last step that has processed any."""
    if len(lines) >= 2:
        for d in reversed(range(1, len(lines))):
            a, b = lines[d - 1].get("rows_processed") or {}, lines[d].get("rows_processed") or {}
            moved = [s["step"] for s in stats["steps"] if b.get(s["step"], 0) != a.get(s["step"], 0)]
            if moved:
                return moved[-1]
    active = [s["step"] for s in stats["steps"] if s.get("rows_processed") or s.get("seconds")]
    return active[-1] if active else None


def funnel(run: Run, index: DocIndex | None) -> dict[str, Any]:
    """Documents per step (in, out, dropped by reason, errors) from stats.json; characters per fate from the
    index; tokens kept from the sharding step's info."""
    stats = run.stats()
    steps = [{k: s.get(k) for k in ("step", "in", "out", "dropped", "errors", "created", "seconds")}
             for s in stats["steps"]]
    chars: list[dict[str, Any]] = []
    if index is not None and index.has_docs():
        for step, fate, reason, n, c in query(index, "SELECT step, fate, reason, count(*), sum(chars) FROM docs "
                                                     "GROUP BY ALL ORDER BY 4 DESC"):
            chars.append({"step": step, "fate": fate, "reason": reason, "documents": n, "chars": int(c or 0)})
    tokens = next(((s.get("info") or {}).get("text_tokens") for s in stats["steps"]
                   if isinstance((s.get("info") or {}).get("text_tokens"), int)), None)
    t = stats["totals"]
    return {"steps": steps, "by_fate": chars, "characters_out": t.get("characters_out"), "tokens_out": tokens,
            "totals": t}


def progress(run: Run, index: DocIndex | None) -> dict[str, Any]:
    """Documents/s over time (read and written) from progress.jsonl, and seconds per step from stats.json."""
    stats = run.stats()
    lines, bad = run.progress()
    step = max(1, len(lines) // 400)  # at most ~400 points however long the run
    pts = lines[::step] + ([lines[-1]] if lines and (len(lines) - 1) % step else [])
    first = stats["steps"][0]["step"] if stats["steps"] else "read"
    series = []
    for a, b in zip(pts, pts[1:]):
        dt = b["elapsed_s"] - a["elapsed_s"]
        if dt <= 0:
            continue
        read = ((b.get("rows_processed") or {}).get(first, 0) - (a.get("rows_processed") or {}).get(first, 0)) / dt
        done = ((b.get("documents_in") or 0) - (a.get("documents_in") or 0)) / dt
        series.append({"t": round(b["elapsed_s"], 1), "read_per_s": round(read, 2), "written_per_s": round(done, 2),
                       "documents_out": b.get("documents_out")})
    per_step = [{"step": s["step"], "seconds": s.get("seconds") or 0, "wall_s": s.get("wall_s"),
                 "workers": s.get("workers"), "parallelism": s.get("parallelism"), "stages": s.get("stages")}
                for s in stats["steps"]]
    return {"series": series, "steps": per_step, "summary": summary(run, index), "unreadable_lines": bad}


def languages(run: Run, index: DocIndex | None) -> dict[str, Any]:
    rows = []
    if index is not None and index.has_docs():
        for lang, kept, n, c in query(index, "SELECT coalesce(language, '(none)'), fate = 'kept', count(*), "
                                             "sum(chars) FROM docs GROUP BY ALL"):
            rows.append({"language": lang, "kept": bool(kept), "documents": n, "chars": int(c or 0)})
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = by.setdefault(r["language"], {"language": r["language"], "kept_documents": 0, "dropped_documents": 0,
                                          "kept_chars": 0, "dropped_chars": 0})
        k = "kept" if r["kept"] else "dropped"
        d[f"{k}_documents"] += r["documents"]
        d[f"{k}_chars"] += r["chars"]
    langs = sorted(by.values(), key=lambda d: -(d["kept_documents"] + d["dropped_documents"]))
    return {"languages": langs}


def thresholds(stats: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per attribute, the thresholds of the rules that use it: filter rules (``keep``/``drop`` comparisons with a
    number) and select steps (``attribute`` with the threshold the step recorded in its info)."""
    out: dict[str, list[dict[str, Any]]] = {}
    info = {s["step"]: s.get("info") or {} for s in stats["steps"]}
    for cfg in (stats.get("config") or {}).get("steps") or []:
        if not isinstance(cfg, dict):
            continue
        label = cfg.get("label") or cfg.get("name")
        for rule in cfg.get("rules") or []:
            if not isinstance(rule, dict):
                continue
            for kind in ("keep", "drop"):
                for attr, op, num in _CMP.findall(str(rule.get(kind) or "")):
                    out.setdefault(attr, []).append({"step": label, "reason": rule.get("reason"), "rule": kind,
                                                     "op": op, "value": float(num)})
        attr, thr = cfg.get("attribute"), info.get(label, {}).get("threshold", cfg.get("threshold"))
        if isinstance(attr, str) and isinstance(thr, (int, float)) and math.isfinite(thr):
            out.setdefault(attr, []).append({"step": label, "reason": cfg.get("reason"), "rule": "keep",
                                             "op": ">=", "value": float(thr)})
    return out


def attributes(run: Run, index: DocIndex | None) -> dict[str, Any]:
    cols = index.score_columns() if index is not None and index.has_docs() else []
    thr = thresholds(run.stats())
    # first shown: a ruled score (a 0/1 duplicate flag makes a dull histogram), else the first attribute
    ruled = sorted((c for c in cols if c in thr), key=lambda c: c.endswith("duplicate"))
    return {"attributes": cols, "default": ruled[0] if ruled else (cols[0] if cols else None), "thresholds": thr}


def value_range(index: DocIndex | None, attr: str) -> tuple[float | None, float | None, int]:
    """min, max and the number of documents without a value of ``attr``."""
    if index is None or not index.has_docs():
        raise RunError("no per-document stats indexed yet")
    if attr not in index.score_columns():
        raise RunError(f"unknown attribute {attr!r}")
    col = quote(attr)
    lo, hi, n_null = query(index, f"SELECT min({col}), max({col}), count(*) - count({col}) FROM docs")[0]
    return (None if lo is None else float(lo)), (None if hi is None else float(hi)), int(n_null)


def histogram(run: Run, index: DocIndex | None, attr: str, bins: int = BINS,
              span: tuple[float, float] | None = None) -> dict[str, Any]:
    """Counts of ``attr`` in ``bins`` equal bins between its min and max (or ``span``, so two runs' histograms
    share their bins), split by fate; the thresholds of the rules that use it."""
    lo, hi, n_null = value_range(index, attr)
    col = quote(attr)
    thr = thresholds(run.stats()).get(attr, [])
    if lo is None:
        return {"attribute": attr, "edges": [], "counts": {}, "thresholds": thr, "missing": n_null}
    lo, hi = span or (lo, hi)
    width = (hi - lo) / bins if hi > lo else 1.0
    counts: dict[str, list[int]] = {}
    for b, fate, n in query(index, f"SELECT least(CAST(floor(({col} - ?) / ?) AS INTEGER), ?), fate, count(*) "
                                   f"FROM docs WHERE {col} IS NOT NULL GROUP BY ALL ORDER BY 2", [lo, width, bins - 1]):
        counts.setdefault(fate, [0] * bins)[int(b)] += n
    order = {"kept": 0, "drop": 1, "error": 2}  # the same stacking and legend in every chart
    counts = dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))
    return {"attribute": attr, "edges": [lo + i * width for i in range(bins + 1)], "counts": counts,
            "thresholds": thr, "missing": n_null}


def compare_histogram(runs: list[Run], indexes: list[DocIndex | None], attr: str) -> dict[str, Any]:
    """The histograms of ``attr`` in two runs over the same bins (the union of their ranges)."""
    ranges = [value_range(i, attr) for i in indexes]
    los = [r[0] for r in ranges if r[0] is not None]
    his = [r[1] for r in ranges if r[1] is not None]
    span = (min(los), max(his)) if los else None
    return {"runs": [histogram(r, i, attr, span=span) for r, i in zip(runs, indexes)]}


def dedup(run: Run, index: DocIndex | None) -> dict[str, Any]:
    """Per dedup step: cluster-size distribution (its info), duplicates found, and the removed share: documents
    the step's duplicates were dropped for (by the rules that name them) over the documents it saw."""
    stats = run.stats()
    dropped_by_reason: dict[str, int] = {}
    for s in stats["steps"]:
        for reason, n in (s.get("dropped") or {}).items():
            dropped_by_reason[reason] = dropped_by_reason.get(reason, 0) + n
    uses = {attr.split("__", 1)[0]: [t["reason"] for t in ts] for attr, ts in thresholds(stats).items()}
    out = []
    for s in stats["steps"]:
        info = s.get("info") or {}
        if not isinstance(info.get("clusters_by_size"), dict):
            continue
        reasons = sorted(set(uses.get(s["step"], [])))
        removed = sum(dropped_by_reason.get(r, 0) for r in reasons)
        out.append({"step": s["step"], "documents": s["in"], "clusters": info.get("clusters"),
                    "duplicates": info.get("duplicates"), "clusters_by_size": info["clusters_by_size"],
                    "drop_reasons": reasons, "removed": removed,
                    "removed_share": round(removed / s["in"], 4) if s["in"] else None})
    return {"steps": out}


def shards(run: Run, index: DocIndex | None) -> dict[str, Any]:
    """Tokens per shard against the target (manifest.json) and tokenizer metrics per language (step info)."""
    m = run.manifest()
    stats = run.stats()
    metrics = next(((s.get("info") or {}).get("tokenizer_metrics") for s in stats["steps"]
                    if (s.get("info") or {}).get("tokenizer_metrics")), None)
    if not m:
        return {"shards": [], "target": None, "tokenizer": None, "metrics": metrics}
    rows = [{k: sh.get(k) for k in ("shard", "documents", "characters", "tokens", "text_tokens")}
            for sh in m.get("shards") or [] if isinstance(sh, dict)]
    return {"shards": rows, "target": m.get("tokens_per_shard"), "tokenizer": (m.get("tokenizer") or {}).get("spec"),
            "metrics": metrics}


def rephrase(run: Run, index: DocIndex | None) -> dict[str, Any]:
    """Documents created by a step (synthetic rephrasings), by style and fate/rejection reason."""
    if index is None or not index.has_docs() or "born" not in index.columns():
        return {"rows": []}
    style_cols = [c for c in index.columns() if c.endswith("__style")]
    style = f"coalesce({' , '.join(quote(c) for c in style_cols)})" if style_cols else "NULL"
    rows = query(index, f"SELECT born, {style}, fate, reason, count(*), sum(chars) FROM docs WHERE born IS NOT NULL "
                        "GROUP BY ALL ORDER BY 1, 2, 3, 4")
    return {"rows": [{"step": b, "style": s, "fate": f, "reason": r, "documents": n, "chars": int(c or 0)}
                     for b, s, f, r, n, c in rows]}


BROWSE = ("id", "url", "fate", "step", "reason", "language", "chars")


def documents(run: Run, index: DocIndex | None, fate: str | None = None, step: str | None = None,
              reason: str | None = None, language: str | None = None, search: str | None = None,
              offset: int = 0, limit: int = PAGE) -> dict[str, Any]:
    """A page of documents matching the filters (all optional), in file order, with the count of all matches."""
    if index is None or not index.has_docs():
        return {"documents": [], "total": 0, "facets": []}
    where, params = [], []
    for col, val in (("fate", fate), ("step", step), ("reason", reason), ("language", language)):
        if val:
            where.append(f"{col} = ?")
            params.append(val)
    if search:
        where.append("(id = ? OR contains(url, ?))")
        params += [search, search]
    cond = f"WHERE {' AND '.join(where)}" if where else ""
    total = query(index, f"SELECT count(*) FROM docs {cond}", params)[0][0]
    cols = ", ".join(quote(c) for c in BROWSE)
    limit = max(1, min(int(limit), 500))
    # in index order (files as ingested, rows in file order): no sort, so a deep page streams instead of sorting
    # millions of rows
    rows = query(index, f"SELECT {cols} FROM docs {cond} LIMIT ? OFFSET ?", params + [limit, max(0, int(offset))])
    facets = query(index, "SELECT fate, step, reason, count(*) FROM docs GROUP BY ALL ORDER BY 4 DESC")
    return {"documents": [dict(zip(BROWSE, r)) for r in rows], "total": total, "offset": offset, "limit": limit,
            "facets": [{"fate": f, "step": s, "reason": r, "documents": n} for f, s, r, n in facets]}


def document(run: Run, index: DocIndex | None, doc_id: str, with_text: bool = True) -> dict[str, Any]:
    """One document: its attributes and provenance, its text when it was kept, and for a duplicate the
    representative of its cluster (the kept document it duplicates)."""
    if index is None or not index.has_docs():
        raise RunError("no per-document stats indexed yet")
    cur = index.cursor().execute("SELECT * FROM docs WHERE id = ? LIMIT 1", [doc_id])
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    if row is None:
        raise RunError(f"no document with id {doc_id!r} in this run")
    d = {k: v for k, v in zip(names, row) if v is not None and not k.startswith("_")}
    prov = {k: d.pop(k) for k in ("file", "ord", "record_id", "offset", "url") if k in d}
    head = {k: d.pop(k) for k in ("id", "fate", "step", "reason", "detail", "born", "language", "chars") if k in d}
    clusters = {k: d.pop(k) for k in list(d) if k.endswith("__cluster")}
    edits = json.loads(d.pop("edits")) if d.get("edits") else {}
    dup_of = []
    for col, rep in clusters.items():
        if rep == doc_id:
            continue
        r = query(index, "SELECT id, fate, url FROM docs WHERE id = ? LIMIT 1", [rep])
        dup_of.append({"step": col[:-len("__cluster")], "id": rep,
                       "fate": r[0][1] if r else None, "url": r[0][2] if r else None})
    # what edit steps cut or replaced: one row per step and rule, with the first pieces that went
    edited = [{"step": step, "rule": rule, "spans": r["spans"], "chars": r["chars"], "removed": r.get("removed", [])}
              for step, rules in sorted(edits.items()) for rule, r in sorted(rules.items())]
    out = {**head, "provenance": prov, "attributes": d, "duplicate_of": dup_of, "edits": edited}
    if with_text and head.get("fate") == "kept":
        out["text"] = run.document_text(doc_id)
    elif with_text and head.get("step"):
        rejected = run.rejected_text(doc_id, head["step"])
        if rejected is not None:
            out["rejected_text"] = rejected["text"]
    return out
