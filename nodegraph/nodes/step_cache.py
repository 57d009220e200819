"""Step caching as nodes: the decision to reuse cached features is a node of its own (StepCacheSchedule), so a
step graph shows when the model runs in full; the cached forward (UNetStep with `cache: deepcache`) carries its
features in the repeat's state, which EmptyStepCache starts. DeepCache: Ma, Fang & Wang 2023
(models/deepcache.py)."""

from __future__ import annotations

from typing import Literal

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.step_cache_event import StepCacheDecision
from nodegraph.core.types import Tensor, Transformer

@node("StepCacheSchedule", version=1)
class StepCacheSchedule(Node):
    """Whether step `index` runs the model in full: always with `method` none; with deepcache on every
    `interval`-th step from the first (DeepCache's uniform 1:N schedule), reusing cached features between."""

    class Inputs(Ports):
        method: Literal["none", "deepcache"] = Field("none", description="none | deepcache")
        index: int = Field(0, ge=0, description="the step's index ($loop.index)")
        interval: int = Field(3, ge=1, le=50, description="N: one full step every N steps (1 = never reuse)")

    class Outputs(Ports):
        refresh: bool

    def run(self, i, ctx):
        return {"refresh": i.method == "none" or i.index % i.interval == 0}


@node("EmptyStepCache", version=1)
class EmptyStepCache(Node):
    """An empty feature cache: the initial value of a repeat's cache state (nothing cached yet)."""

    class Outputs(Ports):
        features: Tensor

    def run(self, i, ctx):
        import torch

        return {"features": torch.empty(0)}


@node("FirstBlockCacheTransformer", version=1)
class FirstBlockCacheTransformer(Node):
    """A transformer whose calls in this run go through a first-block cache (models/first_block_cache.py):
    each call runs the first block and skips the others when its residual changed by at most `threshold` since
    the last full call (diffusers' FirstBlockCache, default 0.05). With method none the transformer passes
    through unchanged. Made afresh each run (the cache's state belongs to one run); every call sends a
    StepCacheDecision event."""

    pure = False  # the returned handle carries one run's cache state

    class Inputs(Ports):
        transformer: Transformer
        method: Literal["none", "first_block"] = Field("none", description="none | first_block")
        threshold: float = Field(0.05, ge=0.0, le=1.0, description="relative change of the first block's "
                                                                   "residual below which the other blocks are skipped")

    class Outputs(Ports):
        transformer: Transformer

    def run(self, i, ctx):
        if i.method == "none":
            return {"transformer": i.transformer}
        from nodegraph.models.first_block_cache import CachedTransformer

        node_id = ctx.node_id
        emit = (lambda reused: ctx.emit(StepCacheDecision(node_id, "first_block", reused))) if ctx.hooks else None
        return {"transformer": CachedTransformer(i.transformer, i.threshold, emit)}


TRANSFORMER_CACHES = Literal["none", "first_block", "taylorseer", "mag", "faster", "pab"]


@node("TransformerCacheSchedule", version=1)
class TransformerCacheSchedule(Node):
    """Whether transformer call `index` at timestep `t` runs in full under a scheduled cache: taylorseer (the
    first 3 calls, then every `interval`-th from the 4th on), pab (outside 100 < t < 800, and every
    `interval`-th call), faster (outside t < 681, and every `interval`-th call after the first). For none,
    first_block and mag the schedule has no say (True): the latter two decide from the data inside the call.
    The function is models/step_caches/schedule.py's, the one the caches follow."""

    class Inputs(Ports):
        method: TRANSFORMER_CACHES = Field("none", description="none | first_block | taylorseer | mag | faster | pab")
        index: int = Field(0, ge=0, description="the call's index ($loop.index)")
        interval: int = Field(0, ge=0, le=50, description="one full call every N (0 = the method's default: "
                              "taylorseer 5, faster and pab 2)")
        t: Tensor  # the scheduler's timestep of this step ($loop.item)

    class Outputs(Ports):
        refresh: bool

    def run(self, i, ctx):
        from nodegraph.models.step_caches.schedule import full_call

        return {"refresh": full_call(i.method, i.index, i.interval, float(i.t.reshape(-1)[0]))}


@node("StepCacheRefresh", version=1)
class StepCacheRefresh(Node):
    """The cached transformer of StepCacheTransformer with this step's decision made: for taylorseer, faster and
    pab its next call runs every module when `refresh` is true and reuses attention outputs when false. For
    first_block and mag (the data decides) and none, the transformer passes through."""

    pure = False  # the handle carries one run's cache state

    class Inputs(Ports):
        transformer: Transformer
        method: TRANSFORMER_CACHES = Field("none", description="the cache StepCacheTransformer was given")
        refresh: bool = Field(True, description="run this step's call in full (TransformerCacheSchedule)")

    class Outputs(Ports):
        transformer: Transformer

    def run(self, i, ctx):
        from nodegraph.models.step_caches.schedule import SCHEDULED

        decided = getattr(i.transformer, "decided", None)
        if i.method not in SCHEDULED:
            return {"transformer": i.transformer}
        if decided is None:
            raise ValueError(f"`method` {i.method!r} needs the transformer made by StepCacheTransformer with the same "
                             f"method; this one is a {type(i.transformer).__name__} without a cache")
        return {"transformer": decided(i.refresh)}


RATIOS_HELP = ("mag: the model's magnitude ratios, comma-separated (one per step of a calibration run; resampled "
               "to this run's steps); `calibrate` measures them (no step skipped, printed as a warning); `flux` = "
               "MagCache's FLUX.1-dev ratios")


@node("StepCacheTransformer", version=1)
class StepCacheTransformer(Node):
    """A transformer whose calls in this run go through one step cache (models/step_caches/): first_block (skip
    the later blocks while the first block's residual barely changes), taylorseer (forecast attention outputs
    between full steps), mag (skip the stack while the magnitude-ratio error stays under `threshold`), faster
    (extrapolate attention outputs for t below 681), pab (reuse attention outputs inside t 100–800). With method
    none the transformer passes through. Made afresh each run; every call sends a StepCacheDecision event."""

    pure = False  # the returned handle carries one run's cache state

    class Inputs(Ports):
        transformer: Transformer
        method: TRANSFORMER_CACHES = Field("none", description="none | first_block | taylorseer | mag | faster | pab")
        threshold: float = Field(0.0, ge=0.0, le=1.0, description="first_block: relative change of the first "
                                 "block's residual; mag: accumulated error (0 = the method's diffusers default: "
                                 "first_block 0.05, mag 0.06)")
        interval: int = Field(0, ge=0, le=50, description="taylorseer / faster / pab: one full call every N (0 = "
                              "the method's default: taylorseer 5, faster and pab 2)")
        steps: int = Field(28, ge=1, le=1000, description="mag: the run's number of transformer calls")
        mag_ratios: str = Field("", description=RATIOS_HELP)

    class Outputs(Ports):
        transformer: Transformer

    def run(self, i, ctx):
        return {"transformer": cached_transformer(i.transformer, i.method, ctx, threshold=i.threshold,
                                                  interval=i.interval, steps=i.steps, mag_ratios=i.mag_ratios)}


def cached_transformer(transformer, method: str, ctx, *, threshold: float = 0.0, interval: int = 0, steps: int = 28,
                       mag_ratios: str = ""):
    """`transformer` with its calls through a fresh cache of `method` (none: itself); each call sends a
    StepCacheDecision from `ctx`'s node."""
    if method == "none":
        return transformer
    from nodegraph.models.step_caches.handle import CachedTransformer, make_cache

    ratios = parse_mag_ratios(mag_ratios) if method == "mag" else None
    cache = make_cache(method, threshold=threshold, interval=interval or None, steps=steps, mag_ratios=ratios)
    node_id = ctx.node_id

    def on_call(reused: bool) -> None:
        if ctx.hooks:
            ctx.emit(StepCacheDecision(node_id, method, reused))
        if method == "mag" and ratios is None and len(cache.measured) == steps:
            import warnings

            values = ",".join(f"{r:.5f}" for r in cache.measured)
            warnings.warn(f"{node_id}: MagCache calibration of {steps} steps: pass "
                          f"`mag_ratios={values}` (graphs: --set cache_mag_ratios=...)", stacklevel=2)
    return CachedTransformer(transformer, cache, method, on_call)


@node("StepCacheNegative", version=1)
class StepCacheNegative(Node):
    """The transformer for true CFG's negative-prompt calls, with a cache state of its own as diffusers' pipelines
    give them (`cache_context("uncond")`); method none: the transformer itself. With true CFG on: taylorseer,
    first_block and mag (a state per context in diffusers too); diffusers 0.42.1's PAB and FasterCache hooks keep
    one state for both contexts (the negative call takes the positive call's attention), so they are refused with
    true CFG rather than computed otherwise."""

    pure = False  # the returned handle carries one run's cache state

    class Inputs(Ports):
        transformer: Transformer
        method: TRANSFORMER_CACHES = Field("none", description="the positive calls' cache (StepCacheTransformer)")
        interval: int = Field(0, ge=0, le=50, description="taylorseer: one full call every N (0 = 5)")
        true_cfg_off: bool = Field(True, description="true CFG is off: no negative calls (FluxTrueCFGOff)")
        threshold: float = Field(0.0, ge=0.0, le=1.0, description="first_block / mag: as StepCacheTransformer's "
                                 "(0 = the method's diffusers default)")
        steps: int = Field(28, ge=1, le=1000, description="mag: the run's number of negative calls")
        mag_ratios: str = Field("flux", description=RATIOS_HELP)

    class Outputs(Ports):
        transformer: Transformer

    def run(self, i, ctx):
        if i.true_cfg_off or i.method in ("none", "taylorseer", "first_block", "mag"):  # off: never called
            return {"transformer": cached_transformer(i.transformer, i.method, ctx, threshold=i.threshold,
                                                      interval=i.interval, steps=i.steps, mag_ratios=i.mag_ratios)}
        raise ValueError(f"`cache: {i.method}` with true CFG (true_cfg_scale > 1 and a negative prompt) is not "
                         f"supported: diffusers 0.42.1's {i.method} hook keeps one state for the positive and the "
                         f"negative calls (the negative call reuses the positive's attention). Use `cache: taylorseer`, "
                         f"`first_block` or `mag` (a state per call, as diffusers), `cache: none`, or turn true CFG off "
                         f"(true_cfg_scale 1).")


@node("CFGStepCache", version=1)
class CFGStepCache(Node):
    """SD3's transformer with FasterCache including its CFG part (models/step_caches/faster_cfg.py): on most
    calls with t < 641 only the conditional half of the CFG batch runs and the unconditional output is rebuilt from
    the conditional one's frequency bands; attention outputs are extrapolated on those calls (t < 681, every 2nd).
    As diffusers' apply_faster_cache on a model that is not guidance-distilled. Method none: the transformer
    itself. Needs guidance on (it skips the unconditional half). Every call sends a StepCacheDecision event."""

    pure = False  # the returned handle carries one run's cache state

    class Inputs(Ports):
        transformer: Transformer
        method: Literal["none", "faster"] = Field("none", description="none | faster")
        guidance_scale: float = Field(7.0, ge=0.0, le=100.0, description="the run's CFG scale (faster needs > 1)")
        interval: int = Field(0, ge=0, le=50, description="one call in N runs the unconditional half (0 = 5)")

    class Outputs(Ports):
        transformer: Transformer

    def run(self, i, ctx):
        if i.method == "none":
            return {"transformer": i.transformer}
        if i.guidance_scale <= 1:
            raise ValueError("`cache: faster` is FasterCache with CFG here: it skips the unconditional half of the "
                             f"guidance batch, and guidance is off (guidance_scale {i.guidance_scale} ≤ 1). Use "
                             "`cache: none`, or guidance_scale > 1.")
        from nodegraph.models.step_caches.faster_cfg import CFGCachedTransformer, FasterCacheCFG

        node_id = ctx.node_id
        emit = (lambda reused: ctx.emit(StepCacheDecision(node_id, "faster", reused))) if ctx.hooks else None
        return {"transformer": CFGCachedTransformer(i.transformer, FasterCacheCFG(i.interval or 5), emit)}


def parse_mag_ratios(text: str) -> list[float] | None:
    """`calibrate` → None (measure them); else the comma-separated positive numbers."""
    if text.strip() == "calibrate":
        return None
    if text.strip() == "flux":
        from nodegraph.models.step_caches.mag_cache import FLUX_RATIOS

        return list(FLUX_RATIOS)
    try:
        ratios = [float(part) for part in text.split(",")] if text.strip() else []
    except ValueError:
        ratios = []
    if not ratios or not all(0.0 < r < 10.0 for r in ratios):
        raise ValueError(f"`mag_ratios` must be the model's magnitude ratios, comma-separated numbers "
                         f"between 0 and 10 (got {text!r}), or `flux` (FLUX.1-dev's); for another model run once "
                         f"with `mag_ratios: calibrate` (graphs: --set cache_mag_ratios=calibrate) to measure them.")
    return ratios
