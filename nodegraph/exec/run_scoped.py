"""A component cache for a process that runs one graph and exits (the `nodegraph run` command).

Why: the process-wide cache keeps every loaded model until the process ends, so a run's peak memory is the sum
of all its models (SDXL: both text encoders + UNet + VAE). A one-shot process gains nothing from keeping a model
after its last reader. Here a model is held only while the run holds it: the executor frees each value after
the last node that reads it, so the text encoders go once the prompts are encoded and the UNet once the
denoising loop ends, and the peak is the largest phase instead of the sum. Within the run, a component that is
still held is shared as before (loaded once); the numbers computed do not change.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from nodegraph.core.context import ComponentCache


class RunScopedComponents(ComponentCache):
    """Models (and other objects that take weak references) are kept only while something else holds them;
    values that cannot be weakly referenced (config dicts, strings, None) are small and kept. For one run at a
    time (no per-key locking)."""

    def __init__(self):
        super().__init__()
        self._held: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def get_or_load(self, key: Any, load: Callable[[], Any]) -> Any:
        value = self._held.get(key)
        if value is not None:
            return value
        if key in self._items:
            return self._items[key]
        value = load()
        try:
            self._held[key] = value
        except TypeError:  # not weakly referenceable
            self._items[key] = value
        return value

    def __contains__(self, key: Any) -> bool:
        return key in self._held or key in self._items

    def __len__(self) -> int:
        return len(self._held) + len(self._items)

    def clear(self) -> None:
        super().clear()
        self._held.clear()

    def held(self) -> list:
        """The keys of the weakly held components still alive (what the run holds now)."""
        return list(self._held.keys())
