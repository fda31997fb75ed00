"""Quality scorers (model-based scoring operators). Each writes scores to attributes; `select`/`filter` decide."""

from scorers import preselect  # noqa: F401
