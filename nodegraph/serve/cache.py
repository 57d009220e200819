"""Moved: the model and node-output caches live in nodegraph/exec/lru_caches.py (batch runs use them too)."""

from nodegraph.exec.lru_caches import (ModelCache, OutputCache, default_model_budget, machine_memory, nbytes,  # noqa: F401
                                       storages, tensors)

__all__ = ["ModelCache", "OutputCache", "default_model_budget", "machine_memory", "nbytes", "storages", "tensors"]
