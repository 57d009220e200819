"""ComfyUI's scaled-fp8 files: float8 Linear weights, each with a per-layer float32 multiplier.

ComfyUI writes them (`flux1-krea-dev_fp8_scaled.safetensors`, `sd3.5_large_fp8_scaled.safetensors`,
`t5xxl_fp8_e4m3fn_scaled.safetensors`, …) as:

* a marker tensor `<prefix>scaled_fp8` (empty, or 2 elements): its dtype names the weights' float8 format
  (a float32 marker means float8_e4m3fn); it holds no values;
* for every quantised layer `<layer>.weight` in float8 and `<layer>.scale_weight`, one float32 number s;
  the layer's real weight is `weight · s` (ComfyUI quantises with s = max|W| / 448);
* optionally `<layer>.scale_input`, the input's scale for fp8 × fp8 matrix products on GPUs that have them.

Facts read from ComfyUI's source: comfy/utils.py `convert_old_quants` and comfy/ops.py `mixed_precision_ops`
(its master since the comfy_kitchen quantisation; no commit pinned), comfy_kitchen's `dequantize_per_tensor_fp8`
(eager and CUDA backends), and the older comfy/ops.py `scaled_fp8_ops` and comfy/model_detection.py. The marker
is popped from the state dict before loading; `scale_input` is read only by the fp8 × fp8 product
(`torch._scaled_mm`), so ordinary compute ignores it, and so does nodegraph; the marker's 2-element form only turns
that product's full-precision mode on. In ordinary (not fp8-matmul) compute on CPU, comfy_kitchen's eager backend,
the weight is upcast to the compute dtype and multiplied by the scale cast to that dtype,
`weight.to(dtype) * scale.to(dtype)`: that is the arithmetic here, ComfyUI's on CPU. Its CUDA backends compute
`(weight.float() * scale).to(dtype)` (the same in float32 runs; in bf16 one rounding fewer), and the older
`scaled_fp8_ops` scaled the input instead when it was the smaller tensor. The per-layer multiply is done here at
call time on the kept float8 weight (models/fp8.py), one byte a weight; where a loader reads the weight in the
compute dtype instead, `checkpoint.read_tensors` folds the scale in with the same arithmetic.

One deviation: an e5m2 marker. nodegraph keeps such a file's weights as stored, in e5m2, as the older
`scaled_fp8_ops(override_dtype=…)` did; current ComfyUI labels every scaled layer float8_e4m3fn whatever the
marker says (`convert_old_quants`, with a TODO about it) and its mixed_precision_ops casts the stored weights to
that format, re-rounding e5m2 values to e4m3, so for such a file its numbers are not ours.

`unscale(entries)` turns such a file's tensor index into plain float8 entries that carry their scale
(`ScaledEntry`), with the marker and the scale tensors taken out, so every single-file loader reads the file as
it reads a plain float8 one. ComfyUI's newer quantised files (`comfy_quant` per layer: int8, mixed fp8, nvfp4)
are another format and are refused by name.
"""

from __future__ import annotations

import dataclasses
import math
import struct

import torch

from nodegraph.models.checkpoint import Entry
from nodegraph.models.errors import CheckpointError
from nodegraph.models.weight_files import (QUANT_SUFFIXES, SCALE_INPUT, SCALE_WEIGHT, is_scaled_fp8,
                                           scaled_fp8_markers)

FLOAT8 = (torch.float8_e4m3fn, torch.float8_e5m2)


@dataclasses.dataclass(frozen=True)
class ScaledEntry(Entry):
    """A float8 weight whose real values are `stored · scale` (a float32 number read from the file).

    Renames and row splits (`dataclasses.replace`) keep the scale: a fused q/k/v weight split in three gives
    three entries with the one scale of the fused layer, as ComfyUI applies it to the whole matrix."""

    scale: float = 1.0


def unscale(entries: dict[str, Entry], shown: str) -> dict[str, Entry]:
    """`entries` of one file with ComfyUI's scaled-fp8 layout folded into `ScaledEntry` weights (the marker,
    `scale_weight` and `scale_input` tensors removed); any other file's entries are returned as they are.
    A `comfy_quant` file, a scale beside a weight that is not float8 or not of the marker's format, or a scale
    that is not one number is a CheckpointError that says so."""
    keys = entries.keys()
    quant = next((k for k in keys if k.endswith(QUANT_SUFFIXES)), None)
    if quant is not None:
        raise CheckpointError(f"{shown} is a ComfyUI quantized export (per-layer `comfy_quant` / `weight_scale` "
                              f"tensors such as `{quant}`: int8, mixed fp8 or nvfp4), which nodegraph does not read; "
                              f"use the bf16 file or ComfyUI's scaled-fp8 (`scale_weight`) one.")
    if not is_scaled_fp8(keys):
        return entries
    markers = {key[: -len("scaled_fp8")]: entries[key] for key in scaled_fp8_markers(keys)}
    out = {k: e for k, e in entries.items() if k not in scaled_fp8_markers(keys) and not k.endswith(SCALE_INPUT)}
    for key in [k for k in out if k.endswith(SCALE_WEIGHT)]:
        layer = key[: -len(SCALE_WEIGHT)]
        weight, scale = out.get(f"{layer}.weight"), out.pop(key)
        if weight is None:
            raise CheckpointError(f"{shown}: `{key}` scales no weight (`{layer}.weight` is not in the file); "
                                  f"re-download or re-export it.")
        marker = _marker_for(layer, markers)
        wanted = torch.float32 if marker is None else marker.dtype
        wanted = torch.float8_e4m3fn if wanted == torch.float32 else wanted  # ComfyUI's reading of the marker
        if weight.dtype not in FLOAT8 or weight.dtype != wanted:
            raise CheckpointError(f"{shown}: `{layer}.weight` is {str(weight.dtype)[6:]} but its `scale_weight` "
                                  f"and the `scaled_fp8` marker say {str(wanted)[6:]}; a scaled-fp8 file stores its "
                                  f"scaled weights in the marker's float8 format. Re-export the file.")
        out[f"{layer}.weight"] = ScaledEntry(**{f.name: getattr(weight, f.name)
                                                for f in dataclasses.fields(Entry)}, scale=_number(scale, key, shown))
    return out


def _marker_for(layer: str, markers: dict[str, Entry]) -> Entry | None:
    """The marker of the component `layer` belongs to: the one with the longest prefix of its name."""
    found = [p for p in markers if layer.startswith(p)]
    return markers[max(found, key=len)] if found else None


def _number(entry: Entry, key: str, shown: str) -> float:
    """The one float32 (or float16 / bfloat16) value of a scale tensor, read from the file or the loaded tensor."""
    if math.prod(entry.shape) != 1 or not entry.dtype.is_floating_point or entry.dtype in FLOAT8:
        raise CheckpointError(f"{shown}: `{key}` is a {str(entry.dtype)[6:]} tensor of shape {list(entry.shape)}; "
                              f"a scaled-fp8 file holds one float32 number per layer there. Re-export the file.")
    if entry.tensor is not None:
        value = float(entry.tensor.reshape(()).float())
    else:
        with open(entry.local, "rb") as f:
            f.seek(entry.start)
            raw = f.read(entry.end - entry.start)
        value = float(torch.frombuffer(bytearray(raw), dtype=entry.dtype).float()[0]) if len(raw) == \
            entry.dtype.itemsize else float("nan")
    if not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"{shown}: `{key}` is {value}; a layer's scale must be a positive number. "
                              f"Re-download or re-export the file.")
    return struct.unpack("f", struct.pack("f", value))[0]  # exactly the float32 the file holds


def scale_in(scale: float, dtype: torch.dtype) -> float:
    """`scale` rounded to `dtype` as ComfyUI casts it (`scale.to(dtype)`) before multiplying: a Python number a
    tensor of `dtype` multiplies by without rounding it again."""
    return float(torch.tensor(scale, dtype=torch.float32).to(dtype))
