"""This project's stages that transform, drop or reorder documents: one package (or small module) per stage.

Each stage imports only the framework (``curate``) and its own package; none imports another. They reach
pipeline.yaml through the ``curate.operators`` entry points in pyproject.toml, like any user's package.
"""
