"""`preselect`: the PreSelect fastText score. train.py: `curate train preselect`; assets/: the bundled scorer and
its model card."""

from scorers.preselect.operator import PreSelect, PreSelectParams  # noqa: F401
