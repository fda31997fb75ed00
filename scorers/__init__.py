"""Quality scorers (model-based scoring operators). Each writes scores to attributes; `select`/`filter` decide."""
