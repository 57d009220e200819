"""What a long-lived runner keeps between runs (the server, a batch, a Ray actor): loaded models (an LRU under
a memory budget) and node outputs (an LRU under its own budget); the server empties both on POST /free.

Node outputs are looked up by the signatures of nodegraph/exec/cache.py. Tensors of loaded models count
nothing here (the model cache counts them; a LoRA-patched copy counts only its own layers); when the model
cache lets a model go, entries holding any of its tensors go too, so its memory is really returned.
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


def tensors(value: Any):
    """The tensors a value holds: itself, a module's parameters and buffers, or those of list/dict items."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)
    elif hasattr(value, "untyped_storage") and hasattr(value, "dtype"):
        yield value
    elif callable(getattr(value, "parameters", None)) and callable(getattr(value, "buffers", None)):
        yield from value.parameters()
        yield from value.buffers()


def storages(value: Any) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors(value)}


def nbytes(value: Any, shared: frozenset | set = frozenset()) -> int:
    """Bytes of the tensors `value` holds, each storage once, leaving out storages in `shared` (a LoRA-patched
    copy of a cached model costs only its patched layers)."""
    seen: dict[int, int] = {}
    for t in tensors(value):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in shared:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
    return sum(seen.values())


class ModelCache(ComponentCache):
    """The component cache with least-recently-used eviction under `budget` bytes of loaded models."""

    def __init__(self, budget: int, on_evict: Optional[Callable[[Any], None]] = None):
        super().__init__()
        self.budget = budget
        self.on_evict = on_evict
        self._sizes: OrderedDict[Any, int] = OrderedDict()
        self._storages: dict[Any, set[int]] = {}

    def get_or_load(self, key: Any, load: Callable[[], Any]) -> Any:
        value = super().get_or_load(key, load)
        with self._lock:
            if key in self._sizes:
                self._sizes.move_to_end(key)
            elif key in self._items:
                self._sizes[key] = nbytes(value)
                self._storages[key] = storages(value)
                self._evict(keep=key)
        return value

    def _evict(self, keep: Any) -> None:
        while sum(self._sizes.values()) > self.budget and len(self._sizes) > 1:
            key = next(k for k in self._sizes if k != keep)
            del self._sizes[key]
            dropped = self._storages.pop(key, set())
            self._items.pop(key, None)
            self._key_locks.pop(key, None)
            if self.on_evict is not None:
                self.on_evict(dropped)

    def shared_storages(self) -> set[int]:
        """Storages of the loaded models (what node outputs that reuse them do not pay for again)."""
        with self._lock:
            return set().union(*self._storages.values()) if self._storages else set()

    @property
    def used(self) -> int:
        return sum(self._sizes.values())

    def clear(self) -> int:
        count = len(self)
        super().clear()
        with self._lock:
            self._sizes.clear()
            self._storages.clear()
        return count


class OutputCache:
    """Node outputs by signature, least recently used first out, under `budget` bytes of tensors."""

    def __init__(self, budget: int, shared: Callable[[], set[int]] = set):
        self.budget = budget
        self.shared = shared  # storages counted elsewhere (the loaded models)
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
        size = nbytes(list(outputs.values()), self.shared())
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

    def drop_holding(self, dropped: set[int]) -> None:
        """Forget entries holding any of these storages (a model the model cache let go, or a patched copy)."""
        with self._lock:
            for signature in [s for s, (outputs, _) in self._entries.items()
                              if not storages(list(outputs.values())).isdisjoint(dropped)]:
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
