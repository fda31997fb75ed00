"""`segment`: sentence spans. model.py: the bundled SaT-style model (numpy inference); train.py: `curate train
segmenter`; eval.py: boundary F1 for bench/segment.py; assets/: the shipped model and its training record."""

from operators.segment.operator import Segment, SegmentParams  # noqa: F401
