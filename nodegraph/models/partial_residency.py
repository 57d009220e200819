"""Partial residency: a transformer's blocks held in memory but for a share whose weights are read from the file at
each call, for a CPU run whose peak is the transformer's weights.

A block list (Z-Image: 2 + 2 refiner blocks and 30 main ones, ~0.36 GB each in bf16) is loaded as usual except
for the Linear weights of the blocks `file_blocks` picks: those layers read their bytes with `os.preadv` into one
reused buffer (the size of the largest such weight) just before they run, and compute with that. Their parameters
stay copy-on-write views of the file's memory map that nothing reads, so their pages never count in the process's
RSS, where a whole-model load (also a memory map, see models/checkpoint.py) keeps every page it touched; the reads
are served by the page cache at memory speed. models/streaming.py (a memory budget) instead maps every unit and
gives its pages back after it runs: about one unit resident, but each page faulted in again at every call. Here
the rest of the model stays resident, and a plain read into a fixed buffer costs a copy, not page faults.

Bit for bit the resident model's numbers: the same bytes, cast per call to the input's dtype as a load casts them
(a bf16 file in an fp32 run). A layer whose weight was replaced (a fused LoRA clones the layer with its own weight)
computes with that weight; adapters read the layer's `compute_dtype` (the run's, where its parameter is the stored
bf16 view) and fuse into `adapter_weight()` (read from the file, checked), so a LoRA fuses into and adds in the held
model's dtype. The idea is diffusers' group offloading at block level (`offload_type="block_level"`) and
stable-diffusion.cpp's streamed layers, kept to a share of the blocks so that the run's time barely moves.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.errors import CheckpointError


class FileReads:
    """The open files of one partly resident model, the read buffer its file-read layers share, and counters."""

    def __init__(self, size: int):
        self.size = size  # bytes of the largest file-read weight: the buffer is allocated at the first read
        self.buffer: torch.Tensor | None = None
        self.fds: dict[Path, int] = {}
        self.identity: dict[Path, tuple[int, int, int, int]] = {}  # (st_dev, st_ino, st_size, st_mtime_ns) at open
        self.lock = threading.Lock()  # one buffer: two threads calling the model take turns per layer
        self.reads = 0  # weights read so far (tests, reports)
        self.bytes_read = 0
        weakref.finalize(self, _close_all, self.fds)

    def open(self, path: Path) -> None:
        if path not in self.fds:
            self.fds[path] = os.open(path, os.O_RDONLY)
            self.identity[path] = _identity(self.fds[path])

    def check(self, path: Path) -> None:
        """CheckpointError unless `path` is the file opened at load (one fstat): a file rewritten in place (a
        re-download, a re-save under the same name while `serve` holds the model) would give other weights, or
        end early, or fault the map (SIGBUS) when truncated."""
        if _identity(self.fds[path]) != self.identity[path]:
            raise CheckpointError(f"{path} changed on disk while loaded (its weights are read from the file at each "
                                  "call); reload the model (rerun, or restart the server) to use the new file")

    def read(self, source: tuple[Path, int, int, torch.dtype, tuple[int, ...]]) -> torch.Tensor:
        """The stored weight, in the shared buffer (valid until the next read; call under `lock`)."""
        path, start, end, dtype, shape = source
        self.check(path)
        if self.buffer is None:
            self.buffer = torch.empty(self.size, dtype=torch.uint8)
        view, done = memoryview(self.buffer.numpy())[: end - start], 0
        while done < len(view):
            n = os.preadv(self.fds[path], [view[done:]], start + done)
            if n <= 0:
                raise CheckpointError(f"{path} ended early while reading a weight: it changed on disk while loaded; "
                                      "reload the model")
            done += n
        self.reads += 1
        self.bytes_read += end - start
        return self.buffer[: end - start].view(dtype).view(shape)


def _identity(fd: int) -> tuple[int, int, int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _close_all(fds: dict[Path, int]) -> None:
    for fd in fds.values():
        os.close(fd)


class FileLinear(nn.Linear):
    """A Linear whose weight is read from the file for each call (its parameter is an unread view of the map)."""

    file_reads: FileReads
    file_source: tuple[Path, int, int, torch.dtype, tuple[int, ...]]
    file_weight: nn.Parameter  # the parameter installed at load: while `weight` is it, the file is read
    compute_dtype: torch.dtype  # the run's dtype, not the stored one: what adapters (a LoRA) fuse into and add in

    def adapter_weight(self) -> torch.Tensor:
        """The weight an adapter fuses into: its own where it has one, else a copy read (checked) from the file, so
        that a fuse never touches the map (a truncated file would fault it) nor brings its pages in."""
        if self.weight is not self.file_weight:
            return self.weight
        with self.file_reads.lock:
            return self.file_reads.read(self.file_source).clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not self.file_weight:  # a clone given its own weight (a fused LoRA) computes with that
            return F.linear(x, self.weight.to(x.dtype), self.bias)
        with self.file_reads.lock:
            weight = self.file_reads.read(self.file_source)  # (out, in) in the stored dtype
            return F.linear(x, weight if weight.dtype == x.dtype else weight.to(x.dtype), self.bias)


def file_blocks(blocks: list[str], share: float) -> list[str]:
    """`round(share · n)` of the `n` block names, spread evenly over the list (every third for a third)."""
    count = min(len(blocks), max(0, round(share * len(blocks))))
    return [blocks[int((k + 0.5) * len(blocks) / count)] for k in range(count)]


def install_partial(model: nn.Module, entries: dict[str, Any], compute_dtype: torch.dtype, device: torch.device,
                    blocks: list[str]) -> nn.Module:
    """Give a meta-device `model` the fitted `entries`: the plain Linear weights under the `blocks` prefixes read
    from the file at each call (`FileLinear`), everything else loaded as usual. CPU only."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import read_tensors

    if torch.device(device).type != "cpu":
        raise ValueError(f"partial residency reads weights from the file on the CPU; on {device} load resident")
    modules = dict(model.named_modules())
    chosen = {key: entry for key, entry in entries.items() if _file_readable(key, entry, modules, blocks)}
    rest = {key: entry for key, entry in entries.items() if key not in chosen}
    reads = FileReads(max((e.end - e.start for e in chosen.values()), default=0))
    maps: dict[Path, mmap.mmap] = {}
    for key, entry in chosen.items():
        if entry.local not in maps:
            reads.open(entry.local)
            with open(entry.local, "rb") as f:  # copy-on-write, never written: the parameter nothing reads
                maps[entry.local] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        view = torch.frombuffer(maps[entry.local], dtype=entry.dtype, count=(entry.end - entry.start)
                                // entry.dtype.itemsize, offset=entry.start).view(entry.shape)
        install_weights(model, {key: view})
        layer = modules[key.rpartition(".")[0]]
        layer.__class__ = FileLinear
        layer.file_reads, layer.file_weight, layer.compute_dtype = reads, layer.weight, compute_dtype
        layer.file_source = (entry.local, entry.start, entry.end, entry.dtype, tuple(entry.shape))
    install_weights(model, read_tensors(rest, compute_dtype, device))
    model.compute_dtype = compute_dtype
    model.file_reads = reads
    return model


def _file_readable(key: str, entry: Any, modules: dict[str, nn.Module], blocks: list[str]) -> bool:
    owner, _, name = key.rpartition(".")
    layer = modules.get(owner)
    plain = isinstance(layer, nn.Linear) and type(layer).forward is nn.Linear.forward  # not fp8 / LoRA / own forward
    return (name == "weight" and plain and entry.local is not None
            and entry.end > entry.start and entry.start % entry.dtype.itemsize == 0 and entry.dtype.is_floating_point
            and entry.dtype.itemsize > 1 and any(owner.startswith(f"{block}.") for block in blocks))
