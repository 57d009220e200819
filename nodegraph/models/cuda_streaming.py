"""Weights streamed block by block to a CUDA device from pinned host memory, for a model larger than the VRAM
budget: the `--max-memory` path on CUDA (issue 28), as diffusers' group offloading at block level with a
prefetch stream does it.

The model's units (models/streaming.py's: submodules of at most `unit_bytes` of weights) keep their weights in
page-locked host memory. Just before a unit runs, its weights are on the device; while it runs, the next unit's
are copied on a side stream (an event orders the copy before that unit's compute), and once a unit has run its
device copies are dropped. So the device holds about two units' weights at a time, and the copies overlap the
compute. Which unit comes next is learned from the calls (the unit that followed last time); a layer called
outside its unit's own call brings the unit in for that call. The numbers are those of the resident model: the
same bytes, copied.

The device side is one small object (`Transfer`: start a copy, wait for it); `HostTransfer` stands in for it on
the CPU, so the scheduling is tested without a GPU (tests/models/test_cuda_streaming.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Transfer:
    """Copies to a CUDA device on a side stream; `wait` makes the current stream wait for one."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)

    def start(self, host: list[torch.Tensor]) -> tuple[list[torch.Tensor], Any]:
        with torch.cuda.stream(self.stream):
            copies = [t.to(self.device, non_blocking=True) for t in host]
            event = torch.cuda.Event()
            event.record(self.stream)
        return copies, event

    def wait(self, copies: list[torch.Tensor], event: Any) -> None:
        current = torch.cuda.current_stream(self.device)
        current.wait_event(event)
        for t in copies:  # made on the side stream, used on this one: the allocator must know
            t.record_stream(current)


class HostTransfer:
    """The CPU stand-in: a "device copy" is a clone, ready at once. `started` lists the copies in order."""

    def __init__(self):
        self.started: list[int] = []

    def start(self, host: list[torch.Tensor]) -> tuple[list[torch.Tensor], Any]:
        self.started.append(len(self.started))
        return [t.clone() for t in host], None

    def wait(self, copies: list[torch.Tensor], event: Any) -> None:
        return None


class UnitStreamer:
    """The schedule: which unit's weights are on the device, which one is being copied, and which unit usually
    follows which (learned from the calls: a call may skip units, e.g. cross-attention projections whose
    outputs models/attention.py keeps for the run)."""

    def __init__(self, units: list[nn.Module], transfer):
        self.units, self.transfer = units, transfer
        self.host = [[p.data for p in unit.parameters()] for unit in units]  # pinned (CUDA) host copies
        self.successor: dict[int, int] = {}  # unit -> the unit that started after it last time
        self.last: int | None = None
        self.pending: dict[int, tuple[list[torch.Tensor], Any]] = {}
        self.resident: set[int] = set()
        self.most_on_device = 0  # the most units whose weights were on the device (resident + being copied)
        self.prefetched = 0  # units whose copy had started before they were called
        self.loads = 0  # units brought in

    def before(self, i: int) -> None:
        if i in self.resident:  # already in (a layer of it was called on its own first)
            return
        self.loads += 1
        taken = self.pending.pop(i, None)
        self.pending.clear()  # a copy for another unit was a wrong guess: dropped
        if taken is not None:
            self.prefetched += 1
        copies, event = taken if taken is not None else self.transfer.start(self.host[i])
        self.transfer.wait(copies, event)
        for p, copy in zip(self.units[i].parameters(), copies):
            p.data = copy
        self.resident.add(i)
        if self.last is not None:
            self.successor[self.last] = i
        self.last = i
        following = self.successor.get(i)
        if following is not None and following != i and following not in self.resident:
            self.pending[following] = self.transfer.start(self.host[following])
        self.most_on_device = max(self.most_on_device, len(self.resident) + len(self.pending))

    def after(self, i: int) -> None:
        for p, host in zip(self.units[i].parameters(), self.host[i]):
            p.data = host
        self.resident.discard(i)


def stream_to_device(model: nn.Module, device: torch.device, unit_bytes: int | None = None,
                     transfer=None) -> UnitStreamer:
    """Stream an already-loaded CPU `model` to `device` unit by unit: its parameters stay on the host (pinned
    where CUDA is present), its buffers move to the device, and hooks move each unit's weights in before it runs
    and out after. Returns the schedule (also `model.unit_streamer`)."""
    from nodegraph.models.streaming import UNIT_BYTES, units

    found = [unit for _, unit in units(model, unit_bytes or UNIT_BYTES)]
    if transfer is None:
        transfer = Transfer(device)
    if torch.cuda.is_available():
        for p in model.parameters():
            p.data = p.data.pin_memory()
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            module._buffers[name] = buffer.to(device)
    streamer = UnitStreamer(found, transfer)
    for i, unit in enumerate(found):
        unit.register_forward_pre_hook(lambda module, args, _i=i: streamer.before(_i))
        unit.register_forward_hook(lambda module, args, output, _i=i: streamer.after(_i))
        for layer in unit.modules():  # a layer called on its own (a cached projection) brings its unit in and out
            if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):  # a LoRA fuses at each call, on the device
                layer.streamed_weight, layer.compute_device = True, torch.device(device)  # (adapters/streamed_lora.py)
            if layer is not unit and any(True for _ in layer.parameters(recurse=False)):
                layer.register_forward_pre_hook(lambda module, args, _i=i: _borrow(streamer, _i, module))
                layer.register_forward_hook(lambda module, args, output, _i=i: _give_back(streamer, _i, module))
    model.unit_streamer = streamer
    return streamer


def _borrow(streamer: UnitStreamer, i: int, layer: nn.Module) -> None:
    if i not in streamer.resident:
        streamer.before(i)
        layer._streamed_borrow = True


def _give_back(streamer: UnitStreamer, i: int, layer: nn.Module) -> None:
    if getattr(layer, "_streamed_borrow", False):
        layer._streamed_borrow = False
        streamer.after(i)
