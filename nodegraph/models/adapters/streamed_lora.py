"""A LoRA fused into a streamed layer (models/streaming.py, models/cuda_streaming.py) at each call, not once.

A streamed model keeps its Linear/Conv weights in the file's map (CPU) or in pinned host memory (CUDA) and holds
about one block at a time. Fusing a LoRA the usual way (lora.py `_fused`: W' = W + s · B ⊗ A in a new tensor)
would hold W' for every touched layer for the whole run: for a LoRA over a UNet's attention layers that is most
of the model, in the compute dtype (twice a bf16 file's size in an fp32 run), which is what the budget streamed
to avoid. So a streamed layer keeps its own weight and the LoRA's factors, and computes W' just before its call
with the very arithmetic a resident fuse runs once (`_fused`, in the dtype the resident model holds the layer
in: the run's compute dtype, or float8 for a float8 weight), dropping it after the call:

    y = layer_forward(x, fuse(… fuse(W, A₁, B₁, s₁) …, Aₖ, Bₖ, sₖ))

So the pixels are the resident model's with the same LoRA, bit for bit, and the memory is one layer's W' at a
time (plus the factors, r · (in + out) numbers a layer). The price is one rank-r GEMM and one pass over W per
call (docs/memory.md has the measured ratio). This is diffusers' `fuse_lora` result computed the way group
offloading treats weights: brought in per block, never kept.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_PLAIN = (nn.Linear.forward, nn.Conv2d.forward, nn.Conv1d.forward)


def streams(layer: nn.Module, on_call: bool = False) -> bool:
    """Whether a LoRA is fused into `layer` at call time: a streamed Linear/Conv layer, one that already fuses at call
    time (the next LoRA goes after the last, as into a copy), or (`on_call`) any plain one."""
    marked = on_call or getattr(layer, "streamed_weight", False) or isinstance(layer, FusedOnCall)
    return marked and _base_forward(layer) is not None


def held_copy_bytes(matched: dict) -> int:
    """What fusing into copies would hold: the touched layers that do not stream, each in the dtype the fuse
    writes (lora.py: the layer's `compute_dtype`, else its weight's)."""
    total = 0
    for layer, _ in matched.values():
        weight = getattr(layer, "weight", None)  # None: a LoRA-wrapped layer, wrapped again (no copy)
        if weight is not None and not getattr(layer, "streamed_weight", False):
            total += weight.numel() * getattr(layer, "compute_dtype", weight.dtype).itemsize
    return total


def _base_forward(layer: nn.Module):
    from nodegraph.models.base import Conv2d
    from nodegraph.models.fp8 import Fp8Conv1d, Fp8Conv2d, Fp8Linear

    forward = type(layer).forward  # models/base.py's Conv2d: torch.conv2d with nn.Conv2d's arguments
    if isinstance(layer, FusedOnCall) or forward in _PLAIN \
            or forward in (Conv2d.forward, Fp8Linear.forward, Fp8Conv2d.forward, Fp8Conv1d.forward):
        return forward
    return None  # a layer with its own forward: lora.py copies its weight as for a resident layer


class FusedOnCall:
    """Mixin over a streamed layer's own class: the LoRAs fused into its weight for each call only."""

    fused_loras: tuple  # ((down (r, in·kh·kw) fp32, up (out, r) fp32, scale), …) in the order they were fused
    fuse_dtype: torch.dtype  # what the resident model holds this layer in: W' is rounded to it after each fuse
    _factors_on: dict  # device → the factors there (moved once per device: CUDA streaming computes on the GPU)

    def fused_weight(self) -> torch.Tensor:
        from nodegraph.models.adapters.lora import LoraLayer, _fused

        weight = self.weight  # (out, in[, kh, kw]): a view of the map, or the unit's device copy just brought in
        for down, up, scale in self._factors(weight.device):
            weight = _fused(weight, LoraLayer(down, up), scale, getattr(self, "weight_scale", None), self.fuse_dtype)
        return weight

    def _factors(self, device: torch.device) -> tuple:
        if device not in self._factors_on:
            self._factors_on[device] = tuple((d.to(device), u.to(device), s) for d, u, s in self.fused_loras)
        return self._factors_on[device]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from nodegraph.models.fp8 import _Fp8Layer, upcast

        weight = self.fused_weight()
        if isinstance(self, _Fp8Layer):  # the layer's own call-time upcast (models/fp8.py), on W'
            weight = upcast(weight, x.dtype) if self.weight_scale is None else upcast(weight, x.dtype,
                                                                                      self.weight_scale)
        if isinstance(self, nn.Linear):
            return torch.nn.functional.linear(x, weight, self.bias)
        return self._conv_forward(x, weight, self.bias)


_CLASSES: dict[type, type] = {}


def _fused_class(cls: type) -> type:
    if issubclass(cls, FusedOnCall):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"FusedOnCall{cls.__name__}", (FusedOnCall, cls), {})
    return _CLASSES[cls]


def fuse_on_call(layer: nn.Module, down: torch.Tensor, up: torch.Tensor, scale: float,
                 dtype: torch.dtype) -> nn.Module:
    """A copy of streamed `layer` (its parameters and hooks shared, so the stream still brings its weight in and
    gives it back) that fuses this LoRA, after any it already fuses, at each call. `down`/`up` as in the file."""
    clone = copy.copy(layer)
    clone.__class__ = _fused_class(type(layer))
    factor = (down.detach().to(torch.float32).flatten(1), up.detach().to(torch.float32).flatten(1), scale)
    clone.fused_loras = (*getattr(layer, "fused_loras", ()), factor)
    clone.fuse_dtype = dtype
    clone._factors_on = {}
    return clone
