"""Weight files: finding them, reading them, and fitting their keys to a model, strictly.

Finding: safetensors before pickle, one file before an index of shards, `<stem>.<variant>.<ext>` for a variant.
Reading: safetensors headers are parsed here, so a truncated or corrupt file is reported before any data is read;
tensors are then mapped or read (see `read_tensors`).
Fitting: legacy and prefixed keys are renamed, then every key must match the model and every shape must agree;
anything else is a `CheckpointError` that names the keys and the file.
"""

from __future__ import annotations

import math
import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from nodegraph.models.errors import CheckpointError
from nodegraph.models.sources import Source
# finding the files is torch-free (weight_files.py), for the prefetch too; its names stay importable from here
from nodegraph.models.weight_files import (DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS, WeightFiles,  # noqa: F401
                                            find_weights, read_safetensors_header)

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


@dataclass(frozen=True)
class Entry:
    """One tensor of a checkpoint, not yet read."""

    file: str  # as shown in messages
    shape: tuple[int, ...]
    dtype: torch.dtype
    local: Path | None = None  # safetensors: the file and the tensor's byte range
    start: int = 0
    end: int = 0
    tensor: torch.Tensor | None = None  # pickle: already loaded (memory-mapped)


def read_entries(src: Source, weights: WeightFiles) -> dict[str, Entry]:
    """Every tensor's key, shape and dtype, from the headers only (pickles are memory-mapped instead)."""
    entries: dict[str, Entry] = {}
    for path in weights.paths:
        local, shown = src.fetch(path), src.where(path)
        found = _read_pickle(local, shown) if weights.pickle else _read_safetensors_header(local, shown)
        for key, entry in found.items():
            if key in entries:
                raise CheckpointError(f"`{key}` is stored twice, in {entries[key].file} and {shown}.")
            entries[key] = entry
    return entries


def _read_safetensors_header(local: Path, shown: str) -> dict[str, Entry]:
    header = read_safetensors_header(local, shown)  # checked: size, entry count, types (weight_files.py)
    n, size = header.size, local.stat().st_size
    entries = {}
    for key, info in header.tensors.items():
        dtype, shape, (start, end) = _DTYPES.get(info.dtype), tuple(info.shape), info.data_offsets
        if dtype is None:
            raise CheckpointError(f"{shown}: tensor `{key}` has dtype {info.dtype[:40]}, which nodegraph cannot read.")
        nbytes = math.prod(shape) * dtype.itemsize
        if not 0 <= start <= end or end - start != nbytes:
            raise CheckpointError(f"{shown} has a corrupt safetensors header entry for `{key}`.")
        if 8 + n + end > size:
            raise CheckpointError(f"{shown} is truncated: tensor `{key}` ends at byte {8 + n + end} but the file has "
                                  f"{size} bytes; re-download or re-save it.")
        entries[key] = Entry(shown, shape, dtype, local, 8 + n + start, 8 + n + end)
    return entries


def load_pickle_state(local: Path, shown: str):
    """What a pickle checkpoint holds, read with `weights_only` (memory-mapped unless it is the legacy format)."""
    try:
        try:
            return torch.load(local, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(local, map_location="cpu", weights_only=True)  # legacy (pre-zip) format
    except Exception as e:
        raise CheckpointError(f"{shown} could not be read as a weights-only torch checkpoint: {e}") from None


def _read_pickle(local: Path, shown: str) -> dict[str, Entry]:
    state = load_pickle_state(local, shown)
    if not isinstance(state, dict):
        raise CheckpointError(f"{shown} holds a {type(state).__name__}, not a state dict.")
    return {k: Entry(shown, tuple(t.shape), t.dtype, tensor=t) for k, t in state.items() if torch.is_tensor(t)}


def fit(entries: dict[str, Entry], model: nn.Module, rename: Callable[[str], str], what: str) -> dict[str, Entry]:
    """Rename the checkpoint's keys to the model's; every key must match and every shape must agree.

    Keys of the model's non-persistent buffers (which a checkpoint may carry, e.g. CLIP's `position_ids`) are
    dropped. `what` names the model for messages, e.g. "the UNet2DConditionModel of unet/config.json".
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    non_persistent = {name for name, _ in model.named_buffers()} - set(expected)
    fitted: dict[str, Entry] = {}
    for key, entry in entries.items():
        new = rename(key)
        if new in non_persistent:
            continue
        if new in fitted:
            raise CheckpointError(f"{entry.file} holds `{new}` twice, under two names (one legacy); keep one.")
        fitted[new] = entry
    missing = [k for k in expected if k not in fitted]
    unexpected = [k for k in fitted if k not in expected]
    mismatched = [f"{k} is {list(e.shape)} in the file but {list(expected[k])} in the model"
                  for k, e in fitted.items() if k in expected and e.shape != expected[k]]
    if missing or unexpected or mismatched:
        files = sorted({e.file for e in entries.values()})
        problems = [_count(missing, "missing key"), _count(unexpected, "unexpected key"),
                    _count(mismatched, "shape mismatch")]
        raise CheckpointError(
            f"{', '.join(files) if len(files) < 4 else f'{files[0]} and {len(files) - 1} more shards'} does not "
            f"fit {what}: {'; '.join(p for p in problems if p)}. The weights and the config.json beside them must "
            f"come from the same model.")
    return fitted


def _count(items: list[str], noun: str, shown: int = 8) -> str:
    if not items:
        return ""
    more = f", … and {len(items) - shown} more" if len(items) > shown else ""
    plural = ("es" if noun.endswith("h") else "s") if len(items) > 1 else ""
    return f"{len(items)} {noun}{plural} ({', '.join(items[:shown])}{more})"


def read_tensors(entries: dict[str, Entry], dtype: torch.dtype, device: torch.device,
                 channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Read every entry onto `device`, floating-point ones in `dtype`; with `channels_last`, 4-D ones (conv
    kernels) in channels-last memory order.

    A tensor already stored in the wanted dtype, wanted on the CPU, becomes a copy-on-write view of the file's
    memory map: nothing is read until it is used, and its pages are the page cache's, shared, not a second copy
    (diffusers loads the same way). Any other tensor is converted (or moved) straight from the map, and the
    map's pages of it are then released, so that a conversion costs the converted weights plus the largest
    tensor, not the file too; converting from the map rather than from a staging copy spares one pass over the
    file's bytes (an fp32 SD1.5 UNet loaded as bf16: 2.9 → 2.5 CPU seconds, issue 20). A channels-last kernel is
    such a conversion (a permuted copy). Tensors the map cannot hold as their dtype (misaligned) are read into
    one reused staging buffer instead.
    """
    def mappable(entry: Entry) -> bool:
        return _mappable(entry, dtype, device) and not (channels_last and len(entry.shape) == 4)

    layout = torch.channels_last if channels_last else torch.contiguous_format

    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[tuple[str, Entry]]] = {}
    for key, entry in entries.items():
        if entry.tensor is not None:
            state[key] = entry.tensor.to(device=device, dtype=_target(entry.dtype, dtype), copy=True,
                                         memory_format=layout if entry.tensor.dim() == 4 else torch.preserve_format)
        else:
            by_file.setdefault(entry.local, []).append((key, entry))
    staged = [e for items in by_file.values() for _, e in items if not _aligned(e)]
    staging = torch.empty(max((e.end - e.start for e in staged), default=0), dtype=torch.uint8)
    for local, items in by_file.items():
        with open(local, "rb", buffering=0) as f:
            # copy-on-write: writing to a weight copies its page and never touches the file
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if any(_aligned(e) for _, e in items) else None
            for key, entry in sorted(items, key=lambda item: item[1].start):  # sequential reads
                if mapped is not None and _aligned(entry):
                    t = torch.frombuffer(mapped, dtype=entry.dtype, count=_numel(entry), offset=entry.start)
                    t = t.reshape(entry.shape)
                    if mappable(entry):
                        state[key] = t
                        continue
                else:
                    raw = staging[: entry.end - entry.start]
                    f.seek(entry.start)
                    _read_exactly(f, raw.numpy(), entry.file)
                    t = raw.view(entry.dtype).reshape(entry.shape)
                state[key] = t.to(device=device, dtype=_target(entry.dtype, dtype), copy=True,
                                  memory_format=layout if t.dim() == 4 else torch.preserve_format)
                if mapped is not None and _aligned(entry):
                    _release_pages(mapped, entry)
    for key, entry in entries.items():  # scaled-fp8 weights read wide: their scale folded in (models/scaled_fp8.py)
        if getattr(entry, "scale", None) is not None and state[key].dtype.itemsize > 1:
            from nodegraph.models.scaled_fp8 import scale_in

            state[key] = state[key].mul_(scale_in(entry.scale, state[key].dtype))
    return {key: state[key] for key in entries}


def _aligned(entry: Entry) -> bool:
    """A view of the map needs the tensor aligned to its element size (writers align; hand-made files may not)."""
    return entry.tensor is None and entry.end > entry.start and entry.start % entry.dtype.itemsize == 0


def _release_pages(mapped: mmap.mmap, entry: Entry) -> None:
    """Drop the map's pages that hold only this (converted, no longer needed) tensor from the process, so the
    file's bytes are not resident beside their conversion; pages shared with a neighbour are kept (a kept view's
    copy-on-write page must not be discarded). The page cache keeps them."""
    start = -(-entry.start // mmap.PAGESIZE) * mmap.PAGESIZE
    end = entry.end // mmap.PAGESIZE * mmap.PAGESIZE
    if end > start:
        mapped.madvise(mmap.MADV_DONTNEED, start, end - start)


def _target(stored: torch.dtype, wanted: torch.dtype) -> torch.dtype:
    return wanted if stored.is_floating_point else stored  # integer buffers keep their dtype


def _numel(entry: Entry) -> int:
    return (entry.end - entry.start) // entry.dtype.itemsize


def _mappable(entry: Entry, dtype: torch.dtype, device: torch.device) -> bool:
    return device.type == "cpu" and _aligned(entry) and _target(entry.dtype, dtype) == entry.dtype


def _read_exactly(f, buffer, shown: str) -> None:
    view, done = memoryview(buffer), 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise CheckpointError(f"{shown} ended early (was it truncated while loading?); re-download or re-save it.")
        done += n


_LEGACY_ATTENTION = re.compile(r"^(.*\battentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")
_LEGACY_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def legacy_attention_name(key: str) -> str:
    """Attention keys of checkpoints saved before diffusers 0.14 (ddpm-*, SD1.x VAE): `attentions.N.query`,
    `.key`, `.value`, `.proj_attn` → `.to_q`, `.to_k`, `.to_v`, `.to_out.0`."""
    m = _LEGACY_ATTENTION.match(key)
    return f"{m[1]}.{_LEGACY_NAMES[m[2]]}.{m[3]}" if m else key


def default_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype, or its name: "float32"/"fp32", "float16"/"fp16"/"half", "bfloat16"/"bf16"."""
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"`dtype` is {dtype!r}; use a torch.dtype or one of {', '.join(names)}.")
    return names[dtype]

