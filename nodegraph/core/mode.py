"""`RunMode`: what a run computes with besides its inputs — device, dtype, fast mode and a memory budget.

One frozen object that every front-end (CLI, ComfyUI command, server, batch, a Python caller) builds once and
hands to the runner (`nodegraph.runner`), which gives it to `RunContext(mode=...)`; nodes read `ctx.mode`
(or the `ctx.device` / `ctx.dtype` / `ctx.fast` shortcuts). Nothing here imports torch: the device and dtype
are kept as asked (`None` = CUDA when present else CPU / float32) and resolved by `RunContext` on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional


@dataclass(frozen=True)
class RunMode:
    """`device`: None (CUDA when present, else CPU), "cpu", "cuda:1", …; `dtype`: None (fp32), "fp16", "bf16"
    (or a torch.dtype); `fast`: fast mode (nodegraph/fast); `max_memory`: a budget in bytes for the run's
    models and activations, None = no budget (the memory planner, nodegraph/memory, reads it)."""

    device: Any = None
    dtype: Any = None
    fast: bool = False
    max_memory: Optional[int] = None

    def __post_init__(self):
        if self.max_memory is not None and (isinstance(self.max_memory, bool) or not isinstance(self.max_memory, int)
                                            or self.max_memory <= 0):
            raise ValueError(f"`max_memory` must be a positive number of bytes or None, not {self.max_memory!r}")

    def with_(self, **changes: Any) -> RunMode:
        """A copy with some fields changed, e.g. `mode.with_(fast=True)` for a PNG recorded in fast mode."""
        return replace(self, **changes)

    def signature(self) -> bytes:
        """What changes a node's outputs for the same inputs (device, dtype, fast), for the node-output cache's
        signatures. The memory budget is left out: it changes where tensors live and when, never their values."""
        return repr(tuple(str(field) for field in (self.device, self.dtype, self.fast))).encode()
