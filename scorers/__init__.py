"""This project's scorers: steps that only write attributes (langid, quality signals, PreSelect). Scoring is kept
apart from deciding: `filter` and `select` apply thresholds to what these write."""
