"""Pipeline stages, one module each. Importing this package registers them under their pipeline.yaml names."""

from operators import (  # noqa: F401
    exact_dedup,
    extract,
    filter,  # noqa: A004
    langid,
    minhash_dedup,
    quality_signals,
    rephrase,
    segment,
    select,
    shard,
)
