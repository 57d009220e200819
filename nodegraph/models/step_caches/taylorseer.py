"""TaylorSeer: Liu et al. 2025, "From Reusing to Forecasting: Accelerating Diffusion Models with TaylorSeers"
(arXiv 2503.06923).

Instead of reusing a cached feature as it is, forecast it: on full steps every attention module of the main stack
runs and its output f is kept with its finite differences (Δf / Δstep up to `order`); on the steps between, each
module's output is the Taylor series f + Δf·k + Δ²f·k²/2! + … at k steps after the last full one, and the module
itself does not run. Schedule (diffusers 0.42.1's `TaylorSeerCacheConfig`): every call before `warmup` runs in full
(the differences need data), then call s runs in full when (s − warmup − 1) is a multiple of `interval`. Factors are
stored in `factors_dtype` (diffusers' default bfloat16), as diffusers stores them, so the forecasts are equal.

Shapes: each attention output (B, S, dim).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from nodegraph.models.step_caches._forwards import attention_modules, replaced


class TaylorSeerCache:
    """The state of one run: make one per run, enter `applied(model, t)` around each model call."""

    def __init__(self, interval: int = 5, warmup: int = 3, order: int = 1,
                 factors_dtype: torch.dtype = torch.bfloat16):
        if interval < 1 or warmup < 0 or order < 0:
            raise ValueError(f"TaylorSeer: `interval` must be ≥ 1, `warmup` ≥ 0 and `order` ≥ 0 (diffusers' "
                             f"defaults 5, 3, 1); got {interval}, {warmup}, {order}.")
        self.interval, self.warmup, self.order, self.factors_dtype = interval, warmup, order, factors_dtype
        self.step = -1  # index of the current call
        self.last_full: int | None = None
        self.factors: dict[tuple[int, int], list[torch.Tensor]] = {}  # per (module, output): [f, Δf, Δ²f, …]
        self.dtypes: dict[tuple[int, int], torch.dtype] = {}  # per (module, output): its dtype
        self.arity: dict[int, int] = {}  # per module: how many outputs it returns as a tuple (0: one tensor)
        self.decisions: list[bool] = []

    def runs_in_full(self, step: int) -> bool:
        return step < self.warmup or (step - self.warmup - 1) % self.interval == 0

    @contextlib.contextmanager
    def applied(self, model: nn.Module, t: float | None = None, full: bool | None = None) -> Iterator[None]:
        """`full`: the decision when a step graph made it (None: this cache's schedule decides)."""
        self.step += 1
        full = (self.runs_in_full(self.step) if full is None else full) or not self.factors
        self.decisions.append(full)
        modules = attention_modules(model)
        make = self._recording if full else self._forecasting
        with replaced((m, make(k, m.forward)) for k, m in enumerate(modules)):
            yield
        if full:
            self.last_full = self.step

    def _recording(self, k: int, forward):
        def run(*args, **kwargs):
            out = forward(*args, **kwargs)  # (B, S, dim), or a tuple of them (Flux's joint attention)
            for j, o in enumerate(out if isinstance(out, tuple) else (out,)):
                self.factors[k, j] = self._differences(o, self.factors.get((k, j), []))
                self.dtypes[k, j] = o.dtype
            self.arity[k] = len(out) if isinstance(out, tuple) else 0
            return out
        return run

    def _differences(self, out: torch.Tensor, previous: list[torch.Tensor]) -> list[torch.Tensor]:
        """[f, Δf, …] of this full step: divided differences against the last full step's (computed in the
        output's dtype, from the stored factors), stored in factors_dtype."""
        new = [out]
        if self.last_full is not None:
            gap = self.step - self.last_full
            for j in range(min(self.order, len(previous))):
                if previous[j].shape != new[j].shape:
                    break
                new.append((new[j] - previous[j].to(out.dtype)) / gap)
        return [f.to(self.factors_dtype) for f in new]

    def _forecasting(self, k: int, forward):
        def run(*args, **kwargs):
            outs = tuple(self._forecast(k, j) for j in range(max(self.arity[k], 1)))
            return outs if self.arity[k] else outs[0]
        return run

    def _forecast(self, k: int, j: int) -> torch.Tensor:
        """Σ_n Δⁿf · offsetⁿ / n! for output j of module k."""
        factors, dtype = self.factors[k, j], self.dtypes[k, j]
        offset = self.step - self.last_full
        out = torch.zeros_like(factors[0], dtype=dtype)
        for n, factor in enumerate(factors):
            out = out + factor.to(dtype) * (offset ** n / math.factorial(n))
        return out
