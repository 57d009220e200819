"""Weights streamed block by block from the memory-mapped file (CPU), for a model larger than the memory budget.

A streamed model's large tensors are views of a private, read-only-in-practice memory map of its safetensors
file: a page is read (from the page cache, or the disk) when a layer first touches it, and counts in the
process's RSS from then on. After each *unit* (a submodule of at most `unit_bytes` of weights: a resnet, a
transformer block) has run, its pages are given back with `madvise(MADV_DONTNEED)`, so the RSS holds about one
unit's weights at a time instead of the whole model; the page cache keeps the file, so the next call reads them
back at memory speed. The numbers are those of the resident model, bit for bit: the same weights are used
(Linear/Conv weights stored in another dtype than the compute one are cast per layer at call time, exactly as
a load would cast them, with the float8 layers of models/fp8.py). The inspiration is stable-diffusion.cpp's
layer streaming and diffusers' group offloading at block level, without a second copy in host memory.

Weights are never written (fast mode makes copies; a LoRA is fused into a streamed layer at each call, never
held: adapters/streamed_lora.py), which the release relies on: a written page of a private map would be
discarded by it.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import torch
from torch import nn

UNIT_BYTES = 256 << 20  # the most weights one streamed unit holds (a bigger single layer is a unit of its own)


class StreamedWeights:
    """The maps of one streamed model and the byte range of each mapped tensor (by state-dict key)."""

    def __init__(self):
        self.maps: dict[Path, mmap.mmap] = {}
        self.ranges: dict[str, tuple[Path, int, int]] = {}
        self.released = 0  # how many unit releases ran (for tests and the report)

    def release(self, keys: list[str]) -> None:
        for key in keys:
            path, start, end = self.ranges[key]
            lo = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages of this tensor only
            hi = end // mmap.PAGESIZE * mmap.PAGESIZE
            if hi > lo:
                self.maps[path].madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        self.released += 1


def install_streamed(model: nn.Module, entries: dict[str, Any], compute_dtype: torch.dtype, device: torch.device,
                     unit_bytes: int | None = None) -> nn.Module:
    """Give a meta-device `model` the fitted `entries`, mapping its Linear/Conv weights (and every tensor already
    in `compute_dtype`) from the file and releasing them after each unit runs; the rest is read in the compute
    dtype. CPU only."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import read_tensors
    from nodegraph.models.fp8 import enable_fp8, storable

    if torch.device(device).type == "cuda":  # pinned host memory, copied in unit by unit (models/cuda_streaming.py)
        from nodegraph.models.base import install_weights
        from nodegraph.models.checkpoint import read_tensors
        from nodegraph.models.cuda_streaming import stream_to_device

        install_weights(model, read_tensors(entries, compute_dtype, torch.device("cpu")))
        stream_to_device(model, torch.device(device), unit_bytes)
        return model
    if torch.device(device).type != "cpu":
        raise ValueError("weights stream from the file on the CPU and from pinned host memory on CUDA; on "
                         f"{device} load the model resident")
    layers, streamed = storable(model), StreamedWeights()
    rest: dict[str, Any] = {}
    for key, entry in entries.items():
        wide = entry.dtype.is_floating_point and entry.dtype != compute_dtype
        if entry.local is None or entry.end <= entry.start or entry.start % entry.dtype.itemsize \
                or (wide and key not in layers):
            rest[key] = entry
            continue
        if entry.local not in streamed.maps:
            with open(entry.local, "rb") as f:
                streamed.maps[entry.local] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        t = torch.frombuffer(streamed.maps[entry.local], dtype=entry.dtype,
                             count=(entry.end - entry.start) // entry.dtype.itemsize, offset=entry.start)
        install_weights(model, {key: t.reshape(entry.shape)})
        streamed.ranges[key] = (entry.local, entry.start, entry.end)
    install_weights(model, read_tensors(rest, compute_dtype, device))
    enable_fp8(model, kinds=_other_float_dtypes(compute_dtype))  # per-layer cast of weights kept in the file dtype
    model.compute_dtype = compute_dtype
    _mark_streamed(model, set(streamed.ranges), compute_dtype)
    _hook_units(model, streamed, unit_bytes or UNIT_BYTES)
    model.streamed_weights = streamed
    return model


def _mark_streamed(model: nn.Module, keys: set[str], compute_dtype: torch.dtype) -> None:
    """Tell adapters which Linear/Conv layers stream their weight: a LoRA fuses into those at each call
    (adapters/streamed_lora.py), in the dtype the resident model would hold them in (`compute_dtype`, where the
    layer's stored weight is a bf16 view in an fp32 run; a float8 weight stays float8 resident too)."""
    from nodegraph.models.fp8 import fp8_dtypes

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and (f"{name}.weight" if name else "weight") in keys:
            module.streamed_weight = True
            if module.weight.dtype not in fp8_dtypes():
                module.compute_dtype = compute_dtype


def _other_float_dtypes(compute: torch.dtype) -> tuple[torch.dtype, ...]:
    from nodegraph.models.fp8 import fp8_dtypes

    return tuple(d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64, *fp8_dtypes())
                 if d != compute)


def units(model: nn.Module, unit_bytes: int) -> list[tuple[str, nn.Module]]:
    """The submodules streamed as one: the largest whose weights fit `unit_bytes` (a leaf layer always is one);
    never a ModuleList / ModuleDict, which is not called itself (so its forward hook would never run)."""
    found: list[tuple[str, nn.Module]] = []

    def walk(name: str, module: nn.Module) -> None:
        size = sum(p.numel() * p.element_size() for p in module.parameters())
        children = list(module.named_children())
        if (size <= unit_bytes or not children) and not isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            found.append((name, module))
            return
        for child_name, child in children:
            walk(f"{name}.{child_name}" if name else child_name, child)

    for name, child in model.named_children():  # the root's own forward may never run (a VAE's decode)
        walk(name, child)
    return found


def _hook_units(model: nn.Module, streamed: StreamedWeights, unit_bytes: int) -> None:
    for prefix, unit in units(model, unit_bytes):
        keys = [f"{prefix}.{k}" if prefix else k for k, _ in unit.named_parameters()]
        keys = [k for k in keys if k in streamed.ranges]
        if keys:
            unit.register_forward_hook(lambda module, args, output, _keys=keys: streamed.release(_keys))
