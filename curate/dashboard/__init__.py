"""The stats dashboard: `curate dashboard OUT [OUT2]` (a read-only web page over a run's output, live while it
runs) and `curate report OUT -o report.html` (the same views as one self-contained file).

Modules: ``run`` reads a run's small files (stats.json, progress.jsonl, manifest.json) and finds its documents'
text; ``index`` keeps a local DuckDB copy of the per-document stats parquet so every view is one columnar query;
``views`` turns both into the JSON each view draws; ``server`` serves the page and the JSON; ``report`` writes the
static file. The page (``static/``) draws with Chart.js, shipped inside the package (no CDN).
"""
