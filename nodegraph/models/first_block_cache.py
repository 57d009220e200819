"""First-block cache for transformers (ParaAttention's "First Block Cache", after TeaCache: Liu et al. 2024,
"Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model").

At every model call the first block of the main stack runs; its residual (output − input) is compared with the
residual of the last call that ran in full. When the relative mean absolute change
mean|r − r_prev| / mean|r_prev| is at most `threshold`, the other blocks are skipped and the stack's output is the
first block's output plus the residual the other blocks added on that last full call. Matches diffusers 0.42.1's
`apply_first_block_cache` hook (`FirstBlockCacheConfig`, default threshold 0.05): the same decisions, the same
arithmetic, the same state (kept across calls until a new cache is made).

Shapes: h (B, S, dim) — the hidden states the blocks pass on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class FirstBlockCache:
    """The state of one run: make a new one per run, enter `applied(blocks)` around each model call."""

    def __init__(self, threshold: float = 0.05):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"first-block cache: `threshold` must be from 0 to 1 (diffusers' default 0.05; 0 never "
                             f"skips); got {threshold}.")
        self.threshold = threshold
        self.head_residual: torch.Tensor | None = None  # of the last call that ran every block
        self.head_output: torch.Tensor | None = None
        self.tail_residual: torch.Tensor | None = None  # what the blocks after the first added then
        self.compute = True
        self.decisions: list[bool] = []  # per call: True = every block ran

    def _decide(self, residual: torch.Tensor) -> bool:
        if self.head_residual is None:
            return True
        change = (residual - self.head_residual).abs().mean() / self.head_residual.abs().mean()
        return change.item() > self.threshold

    @contextlib.contextmanager
    def applied(self, blocks: nn.ModuleList) -> Iterator[None]:
        """Within: `blocks[0]` decides, the others run or pass their input through, the last records the
        residual. Each block's own forward is restored on leaving."""
        head, *rest = blocks
        wrappers = [(head, self._head(head.forward))]
        wrappers += [(b, self._follower(b.forward, is_tail=k == len(rest) - 1)) for k, b in enumerate(rest)]
        for block, forward in wrappers:
            block.forward = forward
        try:
            yield
        finally:
            for block, _ in wrappers:
                del block.forward  # the class's forward again

    def _head(self, forward):
        def run(h, *args, **kwargs):
            out = forward(h, *args, **kwargs)  # (B, S, dim)
            residual = out - h
            self.compute = self._decide(residual)
            self.decisions.append(self.compute)
            if not self.compute:
                return self.tail_residual + out
            self.head_output, self.head_residual = out, residual
            return out
        return run

    def _follower(self, forward, is_tail: bool):
        def run(h, *args, **kwargs):
            if not self.compute:
                return h
            out = forward(h, *args, **kwargs)
            if is_tail:
                self.tail_residual = out - self.head_output
            return out
        return run


class CachedTransformer:
    """A transformer handle whose calls go through one FirstBlockCache (the main stack is `model.layers`);
    attributes (`config`, `dtype`, ...) are the model's. `on_call(reused)` is told each call's decision."""

    def __init__(self, model: nn.Module, threshold: float, on_call=None):
        if not isinstance(getattr(model, "layers", None), nn.ModuleList) or len(model.layers) < 2:
            raise ValueError(f"first-block cache supports transformers with a main stack of blocks (`layers`: "
                             f"Z-Image); this model is a {type(model).__name__}. Use `cache: none` for it.")
        self.model, self.cache, self.on_call = model, FirstBlockCache(threshold), on_call

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def __call__(self, *args, **kwargs):
        with self.cache.applied(self.model.layers):
            out = self.model(*args, **kwargs)
        if self.on_call is not None:
            self.on_call(not self.cache.decisions[-1])
        return out
