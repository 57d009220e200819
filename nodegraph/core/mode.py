"""`RunMode`: what a run computes with besides its inputs — device, dtype, fast mode, a memory budget and the
storage of the denoiser's weights (fp8).

One frozen object that every front-end (CLI, ComfyUI command, server, batch, a Python caller) builds once and
hands to the runner (`nodegraph.runner`), which gives it to `RunContext(mode=...)`; nodes read `ctx.mode`
(or the `ctx.device` / `ctx.dtype` / `ctx.fast` shortcuts). Nothing here imports torch: the device and dtype
are kept as asked (`None` = CUDA when present else CPU / float32) and resolved by `RunContext` on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

WEIGHT_STORES = ("fp8_e4m3fn", "fp8_e5m2")  # `weights`: how the denoiser's Linear/Conv weights are held (models/fp8.py)
WEIGHT_ALIASES = {"fp8": "fp8_e4m3fn"}


@dataclass(frozen=True)
class RunMode:
    """`device`: None (CUDA when present, else CPU), "cpu", "cuda:1", …; `dtype`: None (fp32), "fp16", "bf16"
    (or a torch.dtype); `fast`: fast mode (nodegraph/fast); `max_memory`: a budget in bytes for the run's
    models and activations, None = no budget (the memory planner, nodegraph/memory, reads it); `weights`: None
    (as the file stores them) or "fp8_e4m3fn" / "fp8_e5m2" ("fp8" = e4m3fn): the denoising model's (UNet,
    transformer) Linear/Conv weights held as float8 and upcast per layer at call time (nodegraph/models/fp8.py)."""

    device: Any = None
    dtype: Any = None
    fast: bool = False
    max_memory: Optional[int] = None
    weights: Optional[str] = None

    def __post_init__(self):
        weights = WEIGHT_ALIASES.get(self.weights, self.weights) if isinstance(self.weights, str) else self.weights
        if weights is not None and weights not in WEIGHT_STORES:
            raise ValueError(f"`weights` must be one of fp8, {', '.join(WEIGHT_STORES)} (or None: as the file stores "
                             f"them), not {self.weights!r}")
        object.__setattr__(self, "weights", weights)
        if self.max_memory is not None and (isinstance(self.max_memory, bool) or not isinstance(self.max_memory, int)
                                            or self.max_memory <= 0):
            raise ValueError(f"`max_memory` must be a positive number of bytes or None, not {self.max_memory!r}")

    def with_(self, **changes: Any) -> RunMode:
        """A copy with some fields changed, e.g. `mode.with_(fast=True)` for a PNG recorded in fast mode."""
        return replace(self, **changes)

    def signature(self) -> bytes:
        """What changes a node's outputs for the same inputs (device, dtype, fast, fp8 weights), for the node-output
        cache's signatures. The memory budget is left out: it changes where tensors live and when, never their
        values. `weights` joins only when set, so the signatures of runs without it stay as they were."""
        fields = (self.device, self.dtype, self.fast) + ((self.weights,) if self.weights else ())
        return repr(tuple(str(field) for field in fields)).encode()
