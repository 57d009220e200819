"""Training recipes for the models nodegraph ships (needs the `train` extra)."""
