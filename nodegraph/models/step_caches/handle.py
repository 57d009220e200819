"""A transformer handle whose every call in one run goes through one step cache, and the caches by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

METHODS = ("first_block", "taylorseer", "mag", "faster", "pab")
SUPPORTED = "transformers with a main stack `layers` of blocks, each with an `attention` module (Z-Image)"


class _FirstBlock:
    """models/first_block_cache.py's cache with the common `applied(model, t)` face."""

    def __init__(self, threshold: float):
        from nodegraph.models.first_block_cache import FirstBlockCache

        self.cache = FirstBlockCache(threshold)

    @property
    def decisions(self) -> list[bool]:
        return self.cache.decisions

    def applied(self, model: nn.Module, t: float | None = None, full: bool | None = None):
        """The first block's residual decides; `full` is ignored."""
        from nodegraph.models.step_caches import flux_blocks
        from nodegraph.models.step_caches._forwards import replaced

        if flux_blocks.is_flux(model):
            return replaced(flux_blocks.first_block_pairs(self.cache, model))
        return self.cache.applied(model.layers)


# The thresholds of diffusers 0.42.1's FirstBlockCacheConfig and MagCacheConfig, used when none is given (0).
DEFAULT_THRESHOLDS = {"first_block": 0.05, "mag": 0.06}


def resolved_threshold(method: str, threshold: float = 0.0) -> float:
    """`threshold`, or (0 / unset) the method's diffusers default: first_block 0.05, mag 0.06."""
    return threshold or DEFAULT_THRESHOLDS.get(method, 0.0)


def make_cache(method: str, *, threshold: float = 0.0, interval: int | None = None, steps: int = 28,
               mag_ratios: Sequence[float] | None = None):
    """One run's cache. `threshold`: first_block's and mag's (0 = the method's diffusers default, see
    resolved_threshold); `interval`: taylorseer's (default 5), faster's and pab's (default 2); `steps` and
    `mag_ratios` (None = calibrate): mag's."""
    threshold = resolved_threshold(method, threshold)
    if method == "first_block":
        return _FirstBlock(threshold)
    if method == "taylorseer":
        from nodegraph.models.step_caches.taylorseer import TaylorSeerCache

        return TaylorSeerCache(interval or 5)
    if method == "mag":
        from nodegraph.models.step_caches.mag_cache import MagCache

        return MagCache(threshold, steps, mag_ratios)
    if method == "faster":
        from nodegraph.models.step_caches.faster_cache import FasterCache

        return FasterCache(interval or 2)
    if method == "pab":
        from nodegraph.models.step_caches.pab import PyramidAttentionBroadcast

        return PyramidAttentionBroadcast(interval or 2)
    raise ValueError(f"unknown step cache `{method}`; the transformer caches are {', '.join(METHODS)}")


def check_supported(model: object, method: str) -> None:
    """Raise a ValueError naming what the caches support when `model` is not one of them: every cache on
    Z-Image (a `layers` stack whose blocks have `attention`) and on Flux (`transformer_blocks`, then
    `single_transformer_blocks`, blocks with `attn`; for first_block and mag at least one double block and two
    blocks in all, as flux_blocks takes the first block to decide and the last to record)."""
    from nodegraph.models.step_caches import flux_blocks
    from nodegraph.models.step_caches._forwards import attention_modules

    layers = getattr(model, "layers", None)
    z_image = isinstance(layers, nn.ModuleList) and len(layers) >= 2 and all(
        isinstance(getattr(block, "attention", None), nn.Module) for block in layers)
    attention = isinstance(model, nn.Module) and isinstance(getattr(model, "transformer_blocks", None),
                                                            nn.ModuleList) and bool(attention_modules(model))
    if attention and method in ("taylorseer", "faster", "pab"):
        return
    if attention and flux_blocks.is_flux(model):
        doubles, singles = len(model.transformer_blocks), len(model.single_transformer_blocks)
        if doubles >= 1 and doubles + singles >= 2:
            return
        raise ValueError(f"step cache `{method}` on Flux needs at least one double-stream block "
                         f"(`transformer_blocks`: the first block decides) and at least two main blocks in all "
                         f"(the others are skipped or reused); this {type(model).__name__} has {doubles} double and "
                         f"{singles} single blocks. Use `cache: none`, or taylorseer, faster or pab for it.")
    if z_image:
        return
    what = SUPPORTED + "; Flux (`transformer_blocks`)"
    raise ValueError(f"step cache `{method}` supports {what}; this model is a {type(model).__name__}. "
                     f"Use `cache: none` for it.")


def scheduler_timestep(model: nn.Module, args: tuple, kwargs: dict) -> float:
    """The scheduler's t (0..1000) of a call: Z-Image's transformer takes t' = (1000 − t)/1000 as its second
    argument, Flux's t/1000 as `timestep` (its fourth); rounded to 1e-3."""
    if isinstance(getattr(model, "layers", None), nn.ModuleList):
        return round(1000.0 * (1.0 - float(args[1].reshape(-1)[0])), 3)
    t = kwargs["timestep"] if "timestep" in kwargs else args[3]
    return round(1000.0 * float(t.reshape(-1)[0]), 3)


class CachedTransformer:
    """Calls go through `cache` (one run's); attributes (`config`, `dtype`, …) are the model's. `on_call(reused)`
    is told each call's decision."""

    def __init__(self, model: nn.Module, cache, method: str, on_call: Callable[[bool], None] | None = None):
        check_supported(model, method)
        self.model, self.cache, self.method, self.on_call = model, cache, method, on_call

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def __call__(self, *args, **kwargs):
        return self.call(None, *args, **kwargs)

    def call(self, full: bool | None, *args, **kwargs):
        """One model call; `full` = the decision a step graph made for it (None: the cache's own)."""
        with self.cache.applied(self.model, scheduler_timestep(self.model, args, kwargs), full):
            out = self.model(*args, **kwargs)
        if self.on_call is not None:
            self.on_call(not self.cache.decisions[-1])
        return out

    def decided(self, full: bool) -> "DecidedTransformer":
        """This handle with its next calls' decision made (taylorseer, faster, pab: their schedules)."""
        return DecidedTransformer(self, full)


class DecidedTransformer:
    """A CachedTransformer whose calls follow a decision made outside (StepCacheRefresh in a step graph)."""

    def __init__(self, handle: CachedTransformer, full: bool):
        self.handle, self.full = handle, full

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __call__(self, *args, **kwargs):
        return self.handle.call(self.full, *args, **kwargs)
