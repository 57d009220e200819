"""float8 weight storage with a per-layer upcast at call time.

The weights of Linear and Conv layers are kept as `float8_e4m3fn` or `float8_e5m2` (one byte each) and cast to
the dtype of the layer's input for the duration of its call only; biases, normalisation and embedding layers
stay in the compute dtype. This is what diffusers' layerwise casting (`enable_layerwise_casting`, which skips
norm and embedding layers) and ComfyUI's `--fp8_e4m3fn-unet` do, written here as a class swap rather than
hooks: `Fp8Linear` is an `nn.Linear` whose `forward` upcasts, with the same attributes and state-dict names.

Two ways in:
* a file that stores float8 tensors (Flux / Z-Image fp8 releases) loads them as they are: `install_fp8` maps
  them from the file on the CPU, nothing upcast;
* `store="fp8_e4m3fn"` converts a bf16/fp32 file's Linear/Conv weights while loading (`install_fp8`) or an
  already-loaded model (`cast_to_fp8`), one tensor at a time, saturating at the format's largest value.

ComfyUI's scaled-fp8 files (models/scaled_fp8.py: a float32 `scale_weight` per layer) load the same way: the weight
stays float8 and the layer keeps its scale (`weight_scale`), multiplied in after the upcast, as ComfyUI computes it
(`weight.to(dtype) * scale.to(dtype)`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

STORE_NAMES = ("fp8_e4m3fn", "fp8_e5m2")


class Fp8Unsupported(ValueError):
    """float8 storage was asked for where torch or the device cannot provide it."""


def fp8_dtypes() -> tuple[torch.dtype, ...]:
    return tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


def check_fp8(device: torch.device | str | None = None, store: str = "fp8_e4m3fn") -> torch.dtype:
    """The torch dtype for `store` ("fp8_e4m3fn" or "fp8_e5m2"), after checking that torch has it and that
    `device` can hold and upcast it; `Fp8Unsupported` with the fix otherwise."""
    if store not in STORE_NAMES:
        raise Fp8Unsupported(f"`weights` is {store!r}; fp8 storage is one of {', '.join(STORE_NAMES)}.")
    dtype = getattr(torch, f"float8_{store[4:]}", None)
    if dtype is None:
        raise Fp8Unsupported(f"this torch ({torch.__version__}) has no torch.float8_{store[4:]}; fp8 weights need "
                             f"torch >= 2.1. Upgrade torch or load the weights in bf16.")
    device = torch.device(device or "cpu")
    try:
        torch.zeros(2, device=device).to(dtype).to(torch.float32)
    except (RuntimeError, TypeError) as error:
        raise Fp8Unsupported(f"device {device} cannot hold {dtype} weights ({error}); load the weights in bf16 "
                             f"or run on the CPU.") from None
    return dtype


def to_fp8(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`weight` rounded to the nearest float8 value, saturating at ±max (torch's plain cast gives NaN/inf)."""
    limit = torch.finfo(dtype).max
    return weight.clamp(-limit, limit).to(dtype)


class _Fp8Layer:
    """Mixin: forward with the float8 weight cast to the input's dtype for this call only (times the layer's
    `weight_scale`, a scaled-fp8 file's per-layer number, when it has one)."""

    weight_scale: float | None = None

    def upcast_weight(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_scale is None:
            return upcast(self.weight, x.dtype)
        return upcast(self.weight, x.dtype, self.weight_scale)


def upcast(weight: torch.Tensor, dtype: torch.dtype, scale: float | None = None) -> torch.Tensor:
    """One layer's float8 weight in the compute dtype (a module-level function so a test can count them); with
    `scale`, multiplied by it rounded to `dtype` first, as ComfyUI dequantises (`w.to(dtype) * s.to(dtype)`)."""
    wide = weight.to(dtype)
    if scale is None:
        return wide
    from nodegraph.models.scaled_fp8 import scale_in

    factor = scale_in(scale, dtype)
    return wide.mul_(factor) if wide is not weight else wide * factor


class Fp8Linear(_Fp8Layer, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.upcast_weight(x), self.bias)


class Fp8Conv1d(_Fp8Layer, nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.upcast_weight(x), self.bias)


class Fp8Conv2d(_Fp8Layer, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.upcast_weight(x), self.bias)


_SWAPS = ((nn.Linear, Fp8Linear), (nn.Conv2d, Fp8Conv2d), (nn.Conv1d, Fp8Conv1d))


def _fp8_class(module: nn.Module) -> type | None:
    """The float8 class for a plain Linear / Conv layer (subclasses with their own forward are left alone, but for
    models/base.py's Conv2d, whose forward is torch's own conv2d call)."""
    from nodegraph.models.base import Conv2d

    for base, fp8 in _SWAPS:
        if isinstance(module, base) and type(module).forward in (base.forward, Conv2d.forward):
            return fp8
    return None


def storable(model: nn.Module) -> set[str]:
    """State-dict keys of the weights that may be float8: those of plain Linear / Conv layers."""
    return {f"{name}.weight" if name else "weight" for name, m in model.named_modules() if _fp8_class(m)}


def enable_fp8(model: nn.Module, kinds: tuple[torch.dtype, ...] | None = None) -> int:
    """Swap every plain Linear / Conv layer whose weight is float8 (or one of `kinds`) to its upcasting class;
    the count. (models/streaming.py passes the dtypes other than the compute one: the upcast is the same.)"""
    kinds, swapped = kinds or fp8_dtypes(), 0
    for module in model.modules():
        cls = _fp8_class(module)
        if cls is not None and module.weight.dtype in kinds:
            module.__class__ = cls
            swapped += 1
    return swapped


def install_fp8(model: nn.Module, entries: dict[str, Any], compute_dtype: torch.dtype, device: torch.device,
                store: str | None = None) -> nn.Module:
    """Give a meta-device `model` the fitted checkpoint `entries` (models/checkpoint.py), keeping Linear/Conv
    weights the file stores as float8 as such and, with `store`, converting the other Linear/Conv weights to
    that float8 format; every other tensor is read in `compute_dtype`."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import read_tensors

    kinds, wanted = fp8_dtypes(), check_fp8(device, store) if store else None
    keys = storable(model)
    groups: dict[torch.dtype, dict[str, Any]] = {}
    scales = {key[: -len(".weight")]: entry.scale for key, entry in entries.items()
              if key in keys and entry.dtype in kinds and getattr(entry, "scale", None) is not None}
    for key, entry in entries.items():
        if key in keys and entry.dtype in kinds:
            target = entry.dtype  # stored float8 (scaled or not): read as is (mapped on the CPU)
        elif key in keys and wanted is not None and entry.dtype.is_floating_point:
            target = wanted
        else:
            target = compute_dtype
        groups.setdefault(target, {})[key] = entry
    for target, group in groups.items():
        if target in kinds and any(e.dtype != target for e in group.values()):
            for key, entry in group.items():  # one tensor at a time: the wide copy never outlives its layer
                install_weights(model, {key: _converted(entry, target, device)})
        else:
            install_weights(model, read_tensors(group, target, device))
    for name, scale in scales.items():  # a scaled-fp8 file's layers: the scale multiplied in at call time
        model.get_submodule(name).weight_scale = scale
    enable_fp8(model)
    return model


def _converted(entry: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    from nodegraph.models.checkpoint import read_tensors

    stored = read_tensors({"t": entry}, entry.dtype, device)["t"]  # on the CPU a view of the file's map
    return stored if entry.dtype == dtype else to_fp8(stored, dtype)


def cast_to_fp8(model: nn.Module, store: str = "fp8_e4m3fn") -> nn.Module:
    """Store an already-loaded model's plain Linear / Conv weights as float8, layer by layer, in place."""
    dtype = check_fp8(next(model.parameters()).device, store)
    with torch.no_grad():
        for module in model.modules():
            if _fp8_class(module) is not None and module.weight.dtype.is_floating_point \
                    and module.weight.dtype not in fp8_dtypes():
                module.weight = nn.Parameter(to_fp8(module.weight.data, dtype), requires_grad=False)
    enable_fp8(model)
    return model


def is_fp8_model(model: nn.Module) -> bool:
    return any(isinstance(m, _Fp8Layer) for m in model.modules())


def fp8_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes held as float8, bytes of every other parameter and buffer)."""
    kinds, small, other = fp8_dtypes(), 0, 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.dtype in kinds:
            small += t.numel()
        else:
            other += t.numel() * t.element_size()
    return small, other
