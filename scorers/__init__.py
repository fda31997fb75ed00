"""Quality scorers (model-based scoring operators). Each writes scores to attributes; `filter` decides.

Scorers land here as their issues are done (PreSelect fastText scorer: `scorers/preselect.py`).
"""
