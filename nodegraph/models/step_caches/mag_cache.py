"""MagCache: Ma et al. 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache" (arXiv 2506.09045).

The ratio of the magnitudes of consecutive steps' residuals (what the main stack adds to its input) is nearly the
same for every prompt of one model: a curve measured once per model (`ratios`, one per step; calibration measures
it). After the first `retention` share of the steps, the cache multiplies the ratios of the steps since the last
full call; while the summed error |1 − product| stays at most `threshold` and at most `max_skip` calls in a row
were skipped, the call skips the whole stack and adds the last full call's residual to the stack's input.
Decisions and arithmetic are those of diffusers 0.42.1's `apply_mag_cache` (`MagCacheConfig`: threshold 0.06,
max_skip_steps 3, retention_ratio 0.2; the ratios resampled to the run's steps by nearest index; the accumulators
float32 like its ratio tensor; the state reset after `steps` calls).

On Flux (both stacks, the image stream's residual) the blocks are wrapped by flux_blocks.py.

Shapes: h (B, S, dim), the hidden states the blocks pass on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from nodegraph.models.step_caches import flux_blocks
from nodegraph.models.step_caches._forwards import replaced


# The magnitude ratios MagCache's authors measured on FLUX.1-dev (28 steps; the first is 1 by definition), as
# diffusers 0.42.1 ships them (`FLUX_MAG_RATIOS`): `mag_ratios: flux` in the graphs.
FLUX_RATIOS = (1.0, 1.21094, 1.11719, 1.07812, 1.0625, 1.03906, 1.03125, 1.03906, 1.02344, 1.03125, 1.02344, 0.98047,
               1.01562, 1.00781, 1.0, 1.00781, 1.0, 1.00781, 1.0, 1.0, 0.99609, 0.99609, 0.98047, 0.98828, 0.96484,
               0.95703, 0.93359, 0.89062)


def resample(ratios: torch.Tensor, steps: int) -> torch.Tensor:
    """The ratio curve at `steps` points: nearest index on an even grid over the measured curve."""
    if len(ratios) == steps:
        return ratios
    if steps == 1:
        return ratios[-1:]
    grid = torch.arange(steps, dtype=torch.float32) * ((len(ratios) - 1) / (steps - 1))
    return ratios[torch.round(grid).long()]


class MagCache:
    """The state of one run of `steps` calls; `ratios` None calibrates (never skips, `measured` gets the curve)."""

    def __init__(self, threshold: float = 0.06, steps: int = 28, ratios: Sequence[float] | None = None,
                 max_skip: int = 3, retention: float = 0.2):
        if not 0.0 <= threshold <= 1.0 or steps < 1 or max_skip < 0 or not 0.0 <= retention <= 1.0:
            raise ValueError(f"MagCache: `threshold` must be from 0 to 1 (diffusers' default 0.06), `steps` ≥ 1, "
                             f"`max_skip` ≥ 0, `retention` from 0 to 1; got {threshold}, {steps}, {max_skip}, "
                             f"{retention}.")
        self.threshold, self.steps, self.max_skip = threshold, steps, max_skip
        self.retention_steps = int(retention * steps + 0.5)
        self.ratios = None if ratios is None else resample(torch.as_tensor(ratios, dtype=torch.float32), steps)
        self.measured: list[float] = []  # calibration: one ratio per call
        self.decisions: list[bool] = []
        self._reset()

    def _reset(self) -> None:
        self.index, self.residual, self.stack_input = 0, None, None
        self.ratio, self.error, self.skipped = 1.0, 0.0, 0

    def _decide(self) -> bool:
        """True = run every block this call (updates the accumulated ratio, error and skip count)."""
        if self.ratios is None or self.index < self.retention_steps:
            return True
        self.ratio = self.ratio * (self.ratios[self.index] if self.index < len(self.ratios) else 1.0)
        self.skipped += 1
        self.error = self.error + abs(1.0 - self.ratio)
        if self.residual is not None and self.error <= self.threshold and self.skipped <= self.max_skip:
            return False
        self.ratio, self.error, self.skipped = 1.0, 0.0, 0
        return True

    @contextlib.contextmanager
    def applied(self, model: nn.Module, t: float | None = None, full: bool | None = None) -> Iterator[None]:
        """`full` is ignored: MagCache decides from its accumulated error."""
        full = self._decide()
        self.decisions.append(full)
        if flux_blocks.is_flux(model):
            with replaced(flux_blocks.mag_pairs(self, model, full)):
                yield
            self._advance()
            return
        head, *rest = model.layers
        tail = rest[-1] if rest else head
        if full:
            pairs = [(head, self._keep_input(head.forward, head is tail))]
            pairs += [(b, self._tail(b.forward)) for b in rest if b is tail]
        else:
            pairs = [(head, self._reuse)] + [(b, self._pass) for b in rest]
        with replaced(pairs):
            yield
        self._advance()

    def _advance(self) -> None:
        self.index += 1
        if self.index >= self.steps:
            self._reset()

    def _keep_input(self, forward, also_tail: bool):
        def run(h, *args, **kwargs):
            self.stack_input = h  # (B, S, dim)
            out = forward(h, *args, **kwargs)
            return self._record(out) if also_tail else out
        return run

    def _tail(self, forward):
        def run(h, *args, **kwargs):
            return self._record(forward(h, *args, **kwargs))
        return run

    def _record(self, out: torch.Tensor) -> torch.Tensor:
        residual = out - self.stack_input  # (B, S, dim): what the whole stack added
        if self.ratios is None:
            self.measured.append(1.0 if self.residual is None else _magnitude_ratio(residual, self.residual))
        self.residual = residual
        return out

    def _reuse(self, h, *args, **kwargs):
        return h + self.residual

    @staticmethod
    def _pass(h, *args, **kwargs):
        return h


def _magnitude_ratio(current: torch.Tensor, previous: torch.Tensor) -> float:
    """Mean over tokens of ‖r_t‖ / ‖r_{t−1}‖ (MagCache's calibration measure)."""
    now = torch.linalg.norm(current.float(), dim=-1)
    before = torch.linalg.norm(previous.float(), dim=-1)
    return (now / (before + 1e-8)).mean().item()
