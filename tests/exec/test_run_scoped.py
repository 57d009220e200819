"""The run-scoped component cache of one-shot processes: a model lives exactly as long as the run holds it."""

from __future__ import annotations

from nodegraph.exec.run_scoped import RunScopedComponents


class Model:
    """Stands for a loaded model (any object that takes weak references)."""


def test_a_component_is_loaded_once_while_held_and_freed_after_its_last_holder_lets_go():
    cache, loads = RunScopedComponents(), []

    def load():
        loads.append(1)
        return Model()

    first = cache.get_or_load("unet", load)
    assert cache.get_or_load("unet", load) is first and len(loads) == 1
    assert "unet" in cache and cache.held() == ["unet"]
    del first
    assert "unet" not in cache and cache.held() == []
    cache.get_or_load("unet", load)  # asked again after it was freed: loaded again
    assert len(loads) == 2


def test_values_without_weak_references_are_kept():
    cache = RunScopedComponents()
    config = cache.get_or_load("scheduler", lambda: {"beta_start": 0.00085})
    assert cache.get_or_load("scheduler", lambda: {}) is config
    assert cache.get_or_load("checked", lambda: None) is None
    assert cache.get_or_load("checked", lambda: 1 / 0) is None  # a stored None is a value, not a miss
    assert len(cache) == 2
