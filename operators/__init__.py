"""Pipeline stages, one module each. Importing this package registers them under their pipeline.yaml names."""

from operators import exact_dedup, extract, filter, langid, minhash_dedup, quality_signals, rephrase, shard  # noqa: F401,A004,E501
