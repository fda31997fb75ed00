"""`shard`: tokenizer-aware, token-balanced Dolma shards. tokenizers.py: tiktoken / Hugging Face / model
tokenizers behind one interface; tokens.py: token files and tokenizer metrics (`curate tokstats`)."""

from operators.shard.operator import Shard, ShardParams  # noqa: F401
