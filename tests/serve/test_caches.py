"""The server's memory budgets: models least recently used go first, node outputs stay under their budget."""

import copy

import torch

from nodegraph.exec.lru_caches import ModelCache, OutputCache, nbytes


def model(n: int) -> torch.nn.Module:
    return torch.nn.Linear(n, n, bias=False)  # n*n float32 weights


def test_models_over_the_budget_are_dropped_least_recently_used_first_with_their_cached_outputs():
    outputs = OutputCache(budget=1 << 20)
    cache = ModelCache(budget=3 * 4 * 64 * 64, on_evict=outputs.drop_holding)  # room for three 64x64 models
    a = cache.get_or_load("a", lambda: model(64))
    cache.get_or_load("b", lambda: model(64))
    cache.get_or_load("c", lambda: model(64))
    outputs.put("sig-a", {"unet": a})
    outputs.put("sig-t", {"latents": torch.zeros(4)})
    assert cache.get_or_load("a", lambda: model(64)) is a  # used again: now b is the oldest
    cache.get_or_load("d", lambda: model(64))
    assert "b" not in cache and all(k in cache for k in "acd")
    cache.get_or_load("e", lambda: model(64))
    assert "c" not in cache and "a" in cache
    cache.get_or_load("f", lambda: model(64))
    cache.get_or_load("g", lambda: model(64))
    assert "a" not in cache and cache.used <= cache.budget
    assert outputs.get("sig-a") is None and outputs.get("sig-t") is not None  # a's entry went with it


def test_node_outputs_stay_under_their_budget_oldest_first_and_loaded_models_count_nothing():
    models = ModelCache(budget=1 << 30)
    outputs = OutputCache(budget=3 * 4000, shared=models.shared_storages)
    for k in range(5):
        outputs.put(f"s{k}", {"x": torch.zeros(1000)})  # 4000 bytes each
    assert [outputs.get(f"s{k}") is not None for k in range(5)] == [False, False, True, True, True]
    assert outputs.used == 12000
    outputs.put("too-big", {"x": torch.zeros(10_000)})
    assert outputs.get("too-big") is None and outputs.used == 12000
    loaded = models.get_or_load("unet", lambda: torch.nn.Sequential(model(64), model(64)))
    outputs.put("model", {"unet": loaded})
    assert outputs.get("model") is not None and outputs.used == 12000
    patched = copy.copy(loaded)  # what a LoRA makes: the same layers but one, which has its own weights
    patched._modules = {"0": loaded[0], "1": model(16)}
    outputs.put("patched", {"unet": patched})
    assert outputs.get("patched") is not None and outputs.used <= 12000
    assert nbytes(patched, models.shared_storages()) == 16 * 16 * 4
    assert nbytes(model(8)) == 8 * 8 * 4 and nbytes([torch.zeros(2), torch.zeros(3)]) == 20
