"""Replace some modules' forward for the length of one model call (an instance attribute over the class's)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from torch import nn


@contextlib.contextmanager
def replaced(pairs: Iterable[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Within: each module's forward is its paired function; leaving restores the class's forward."""
    pairs = list(pairs)
    for module, forward in pairs:
        module.forward = forward
    try:
        yield
    finally:
        for module, _ in pairs:
            del module.forward


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules the attention caches (taylorseer, faster, pab) act on: each main block's
    (Z-Image: `layers.N.attention`; Flux: `transformer_blocks.N.attn` then `single_transformer_blocks.N.attn`)."""
    if isinstance(getattr(model, "layers", None), nn.ModuleList):
        return [block.attention for block in model.layers]
    stacks = (getattr(model, name, None) for name in ("transformer_blocks", "single_transformer_blocks"))
    return [block.attn for stack in stacks if isinstance(stack, nn.ModuleList) for block in stack]
