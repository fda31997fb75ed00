"""Pipeline stages, one module each. Importing this package registers them under their pipeline.yaml names."""

from operators import extract, filter, langid, quality_signals  # noqa: F401,A004
