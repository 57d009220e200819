"""Tensors derived once from a layer's weights (a packed kernel, a concatenated weight) and kept on the layer."""

from __future__ import annotations

from typing import Callable

import torch


def derived(owner: torch.nn.Module, name: str, sources: tuple[torch.Tensor | None, ...],
            make: Callable[[], object]):
    """`make()`, kept in `owner.__dict__[name]` and made again when one of `sources` is replaced by another object
    (a LoRA's fused copy) or changed in place (its `_version` moves: an in-place fuse or load). A source made under
    `torch.inference_mode` (UNetStep's, e.g. a concatenated weight) has no version counter: it is keyed by identity,
    as it is itself derived, and made again as a new object when its own sources change."""
    key = tuple((t, None if t is None or t.is_inference() else t._version) for t in sources)
    cached = owner.__dict__.get(name)  # (key, value)
    if cached is None or len(cached[0]) != len(key) or any(
            a is not b or va != vb for (a, va), (b, vb) in zip(cached[0], key)):
        cached = (key, make())
        owner.__dict__[name] = cached
    return cached[1]
