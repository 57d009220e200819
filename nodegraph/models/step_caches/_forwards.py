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
