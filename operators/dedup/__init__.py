"""`exact_dedup` and `minhash_dedup`: whole-dataset duplicate clustering on Ray.

common.py: normalisation, the hash join, representatives and decisions shared by both; components.py:
distributed connected components; exact.py and minhash.py: the two operators.
"""

from operators.dedup.exact import ExactDedup  # noqa: F401
from operators.dedup.minhash import MinHashDedup  # noqa: F401
