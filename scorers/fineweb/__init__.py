"""The filters of FineWeb (Penedo et al. 2024) with datatrove's definitions, as curate steps that only score:
the URL filter (`url.py`), Gopher repetition and quality (`gopher.py`), C4's line filter as spans to cut (`c4.py`),
FineWeb's quality signals (`quality.py`) and PII spans (`pii.py`). `filter` decides and `edit` cuts or replaces,
as `recipes/fineweb.yaml` puts them together. What they count (words, sentences, punctuation) is in `text.py`."""

from scorers.fineweb.c4 import C4
from scorers.fineweb.gopher import Gopher
from scorers.fineweb.pii import Pii
from scorers.fineweb.quality import FineWebQuality
from scorers.fineweb.url import UrlFilter

__all__ = ["C4", "FineWebQuality", "Gopher", "Pii", "UrlFilter"]
