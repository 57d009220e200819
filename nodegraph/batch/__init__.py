"""Batches: one graph run over a grid of inputs, in this process or on a Ray cluster, resumable.

    from nodegraph.batch import run_batch
    rows = run_batch("graphs/stable_diffusion.yaml", grid={"seed": range(8)}, sets={"model": "builtin:digits"},
                     out="out/batch")

`nodegraph batch` is the same from the command line (docs/batch.md).
"""

from nodegraph.batch.grid import Axis, GridError, Item, parse_grid_option, plan_items
from nodegraph.batch.manifest import MANIFEST_NAME, ManifestError, read_rows
from nodegraph.batch.run import BatchOutcome, ItemFinished, ItemStarted, execute_batch, run_batch

__all__ = ["Axis", "BatchOutcome", "GridError", "Item", "ItemFinished", "ItemStarted", "MANIFEST_NAME",
           "ManifestError", "execute_batch", "parse_grid_option", "plan_items", "read_rows", "run_batch"]
