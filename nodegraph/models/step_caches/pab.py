"""Pyramid attention broadcast: Zhao et al. 2024, "Real-Time Video Generation with Pyramid Attention Broadcast"
(arXiv 2408.12588).

Attention outputs change little between the middle steps of sampling, so inside a timestep range each attention
module of the main stack runs on every `interval`-th call only and its last output is broadcast (reused as it is)
on the calls between. Outside the range, and on the first call, every module runs. This is the spatial
(self-)attention case of diffusers 0.42.1's `apply_pyramid_attention_broadcast` (`spatial_attention_block_skip_range`
= interval, default 2 there; `spatial_attention_timestep_skip_range` (100, 800), bounds excluded); a call runs in
full when its index counted from 0 is a multiple of `interval`, like the hook's per-module iteration counter.

Shapes: each attention output (B, S, dim).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from nodegraph.models.step_caches._forwards import attention_modules, replaced


class PyramidAttentionBroadcast:
    """The state of one run: make one per run, enter `applied(model, t)` around each model call (t: the
    scheduler's timestep, 0..1000)."""

    def __init__(self, interval: int = 2, timestep_range: tuple[float, float] = (100, 800)):
        low, high = timestep_range
        if interval < 1 or not 0 <= low < high:
            raise ValueError(f"pyramid attention broadcast: `interval` must be ≥ 1 (diffusers' example 2) and the "
                             f"timestep range (low, high) with 0 ≤ low < high; got {interval}, {timestep_range}.")
        self.interval, self.low, self.high = interval, low, high
        self.calls = 0
        self.outputs: dict[int, torch.Tensor] = {}  # per module: its last output
        self.decisions: list[bool] = []

    def runs_in_full(self, t: float) -> bool:
        inside = self.low < t < self.high
        return self.calls == 0 or not self.outputs or not inside or self.calls % self.interval == 0

    @contextlib.contextmanager
    def applied(self, model: nn.Module, t: float | None = None, full: bool | None = None) -> Iterator[None]:
        """`full`: the decision when a step graph made it (None: this cache's schedule decides)."""
        if t is None and full is None:
            raise ValueError("pyramid attention broadcast needs each call's timestep")
        full = (self.runs_in_full(t) if full is None else full) or not self.outputs
        self.decisions.append(full)
        modules = attention_modules(model)
        make = self._recording if full else self._broadcasting
        with replaced((m, make(k, m.forward)) for k, m in enumerate(modules)):
            yield
        self.calls += 1

    def _recording(self, k: int, forward):
        def run(*args, **kwargs):
            self.outputs[k] = forward(*args, **kwargs)  # (B, S, dim)
            return self.outputs[k]
        return run

    def _broadcasting(self, k: int, forward):
        def run(*args, **kwargs):
            return self.outputs[k]
        return run
