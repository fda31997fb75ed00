"""An example of a user's own curate operators, packaged apart from curate (see README.md beside it)."""
