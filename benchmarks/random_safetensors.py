"""Big random safetensors files for the benchmarks, written one tensor at a time (bench_flux.py, bench_flux_fp8.py).

The safetensors layout: the header's length (8 bytes, little-endian), the JSON header ({name: {dtype, shape,
data_offsets}} and `__metadata__`) padded with spaces to a multiple of 8, then each tensor's bytes in header order.
The file is written as `<stem>.partial` and renamed once complete, so an interrupted run never leaves a file that
looks finished (the benchmarks reuse a file that exists).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

BYTES = {"F8_E4M3": 1, "F8_E5M2": 1, "BF16": 2, "F16": 2, "F32": 4}  # safetensors dtype → bytes an element


def write_streamed(path: Path, layout: dict[str, tuple[str, tuple[int, ...]]],
                   make: Callable[[str, str, tuple[int, ...]], Any]) -> None:
    """Write `layout` ({name: (safetensors dtype, shape)}) to `path`; `make(name, dtype, shape)` gives each tensor
    when its turn comes (in layout order), so one tensor at a time is in memory."""
    import torch

    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (kind, shape) in layout.items():
        size = BYTES[kind] * math.prod(shape)
        header[name] = {"dtype": kind, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for name, (kind, shape) in layout.items():
            data = make(name, kind, shape).contiguous().reshape(-1).view(torch.uint8)
            start, end = header[name]["data_offsets"]
            if data.numel() != end - start:
                raise ValueError(f"{name}: {data.numel()} bytes made for a {kind} tensor of shape {list(shape)}")
            f.write(data.numpy())
    partial.rename(path)
