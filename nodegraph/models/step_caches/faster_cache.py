"""FasterCache, attention part: Lv et al. 2024, "FasterCache: Training-Free Video Diffusion Model Acceleration
with High Quality" (arXiv 2410.19355).

Inside a timestep range, each attention module of the main stack runs only on every `interval`-th call (counted
from 0; call 0 does not count as one); on the others its output is extrapolated from its last two outputs,
o_t + w·(o_t − o_{t−1}) (the paper's dynamic feature reuse), with w = 0.5 as diffusers' default weight.
Outside the range every module runs. This is diffusers 0.42.1's `apply_faster_cache` on a guidance-distilled model
(`is_guidance_distilled=True`: spatial range (−1, 681), bounds excluded, skip range 2, weight 0.5). FasterCache's
second part, CFG-Cache (the unconditional output rebuilt from the conditional one's low and high frequencies), is
not implemented: with guidance on, the attention reuse applies to the whole batch, positives and negatives alike.

Shapes: each attention output (B, S, dim).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from nodegraph.models.step_caches._forwards import attention_modules, replaced


class FasterCache:
    """The state of one run: make one per run, enter `applied(model, t)` around each model call (t: the
    scheduler's timestep, 0..1000)."""

    def __init__(self, interval: int = 2, timestep_range: tuple[float, float] = (-1, 681), weight: float = 0.5):
        low, high = timestep_range
        if interval < 1 or not low < high or not 0.0 <= weight <= 1.0:
            raise ValueError(f"FasterCache: `interval` must be ≥ 1 (diffusers' default 2), the timestep range (low, "
                             f"high) with low < high and the weight from 0 to 1; got {interval}, {timestep_range}, "
                             f"{weight}.")
        self.interval, self.low, self.high, self.weight = interval, low, high, weight
        self.calls = 0
        self.outputs: dict[int, tuple] = {}  # per module: (o_{t−1}, o_t), each a tensor or a tuple of them
        self.decisions: list[bool] = []

    def runs_in_full(self, t: float) -> bool:
        inside = self.low < t < self.high
        return not inside or not self.outputs or (self.calls > 0 and self.calls % self.interval == 0)

    @contextlib.contextmanager
    def applied(self, model: nn.Module, t: float | None = None, full: bool | None = None) -> Iterator[None]:
        """`full`: the decision when a step graph made it (None: this cache's schedule decides)."""
        if t is None and full is None:
            raise ValueError("FasterCache needs each call's timestep")
        full = (self.runs_in_full(t) if full is None else full) or not self.outputs
        self.decisions.append(full)
        modules = attention_modules(model)
        make = self._recording if full else self._extrapolating
        with replaced((m, make(k, m.forward)) for k, m in enumerate(modules)):
            yield
        self.calls += 1

    def _keep(self, k: int, out):
        self.outputs[k] = (self.outputs.get(k, (out, out))[1], out)
        return out

    def _recording(self, k: int, forward):
        def run(*args, **kwargs):
            return self._keep(k, forward(*args, **kwargs))  # (B, S, dim), or a tuple of them (Flux)
        return run

    def _extrapolating(self, k: int, forward):
        def run(*args, **kwargs):
            before, last = self.outputs[k]
            if isinstance(last, tuple):
                return self._keep(k, tuple(o + (o - b) * self.weight for b, o in zip(before, last)))
            return self._keep(k, last + (last - before) * self.weight)
        return run
