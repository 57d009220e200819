"""What the server keeps between runs: loaded models (an LRU under a memory budget) and node outputs
(an LRU under its own budget), both emptied by POST /free.

Node outputs are looked up by the signatures of nodegraph/exec/cache.py. Stored outputs that are loaded
models count nothing here (the model cache counts them); when the model cache lets a model go, entries
holding it go too, so its memory is really returned.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

from nodegraph.core.context import ComponentCache


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def default_model_budget() -> int:
    """Half the machine's memory (or of the GPU's, when CUDA is used)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory // 2
    except Exception:  # no usable torch: the RAM figure will do
        pass
    return machine_memory() // 2


def nbytes(value: Any) -> int:
    """Bytes held by a tensor, a module's parameters and buffers, or a list/tuple/dict of those."""
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    size = getattr(value, "nbytes", None)
    if isinstance(size, int) and hasattr(value, "dtype"):
        return size
    tensors = getattr(value, "parameters", None)
    if callable(tensors) and hasattr(value, "buffers"):
        return sum(t.nbytes for t in value.parameters()) + sum(t.nbytes for t in value.buffers())
    return 0


class ModelCache(ComponentCache):
    """The component cache with least-recently-used eviction under `budget` bytes of loaded models."""

    def __init__(self, budget: int, on_evict: Optional[Callable[[Any], None]] = None):
        super().__init__()
        self.budget = budget
        self.on_evict = on_evict
        self._sizes: OrderedDict[Any, int] = OrderedDict()

    def get_or_load(self, key: Any, load: Callable[[], Any]) -> Any:
        value = super().get_or_load(key, load)
        with self._lock:
            if key in self._sizes:
                self._sizes.move_to_end(key)
            elif key in self._items:
                self._sizes[key] = nbytes(value)
                self._evict(keep=key)
        return value

    def _evict(self, keep: Any) -> None:
        while sum(self._sizes.values()) > self.budget and len(self._sizes) > 1:
            key = next(k for k in self._sizes if k != keep)
            del self._sizes[key]
            value = self._items.pop(key, None)
            self._key_locks.pop(key, None)
            if self.on_evict is not None and value is not None:
                self.on_evict(value)

    @property
    def used(self) -> int:
        return sum(self._sizes.values())

    def clear(self) -> int:
        count = len(self)
        super().clear()
        with self._lock:
            self._sizes.clear()
        return count


class OutputCache:
    """Node outputs by signature, least recently used first out, under `budget` bytes of tensors."""

    def __init__(self, budget: int):
        self.budget = budget
        self._entries: OrderedDict[str, tuple[dict, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, signature: str) -> Optional[dict]:
        with self._lock:
            entry = self._entries.get(signature)
            if entry is None:
                return None
            self._entries.move_to_end(signature)
            return entry[0]

    def put(self, signature: str, outputs: dict) -> None:
        size = nbytes([v for v in outputs.values() if getattr(v, "parameters", None) is None])
        if size > self.budget:
            return
        with self._lock:
            old = self._entries.pop(signature, None)
            if old is not None:
                self._used -= old[1]
            self._entries[signature] = (outputs, size)
            self._used += size
            while self._used > self.budget:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._used -= dropped

    def drop_holding(self, value: Any) -> None:
        with self._lock:
            for signature in [s for s, (outputs, _) in self._entries.items()
                              if any(v is value for v in outputs.values())]:
                self._used -= self._entries.pop(signature)[1]

    @property
    def used(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._used = 0
            return count
