"""Write a state dict as ComfyUI writes a scaled-fp8 file, and the same weights dequantized as a plain file.

ComfyUI's layout, written here without nodegraph's code: a `<prefix>scaled_fp8` marker (an empty tensor whose dtype
is the weights' float8 format) for each model part, every Linear weight stored as float8 `round(W / s)` with
s = max|W| / max-of-format in `<layer>.scale_weight` (one float32 number) and `<layer>.scale_input` = 1.0 beside
it. ComfyUI computes with `weight.to(dtype) * scale.to(dtype)` (comfy_kitchen's eager dequantize): the
dequantized twin holds `q.float() * s` in float32, which an fp32 run must reproduce exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

# 2-D weights that are not Linear layers' (ComfyUI leaves embeddings wide)
NOT_LINEAR = ("shared.", "embed_tokens.", "relative_attention_bias.", "embeddings.", "pos_embed", "x_pad_token",
              "cap_pad_token")


def is_linear_weight(key: str, value: torch.Tensor, prefixes: tuple[str, ...]) -> bool:
    return key.endswith(".weight") and value.ndim == 2 and value.is_floating_point() and \
        key.startswith(prefixes) and not any(part in key for part in NOT_LINEAR)


def write_scaled(state: dict[str, torch.Tensor], scaled_path: Path, plain_path: Path | None = None,
                 prefixes: tuple[str, ...] = ("",), fp8: torch.dtype = torch.float8_e4m3fn,
                 scale_factor: dict[str, float] | None = None) -> dict[str, float]:
    """Write `state` as a scaled-fp8 file (its Linear weights under `prefixes` quantised) and, with `plain_path`,
    the dequantized float32 twin. `scale_factor` multiplies the stored scale of the layers named (a wrong
    scale, for sensitivity). Returns {layer: scale written}."""
    scaled, plain, scales = {}, {}, {}
    for prefix in prefixes:
        scaled[f"{prefix}scaled_fp8"] = torch.empty(0, dtype=fp8)
    for key, value in state.items():
        if not is_linear_weight(key, value, prefixes):
            scaled[key] = plain[key] = value.contiguous()
            continue
        layer = key[: -len(".weight")]
        w = value.float()
        s = (w.abs().max() / torch.finfo(fp8).max).clamp(min=1e-12)
        q = (w / s).clamp(-torch.finfo(fp8).max, torch.finfo(fp8).max).to(fp8)
        scaled[key] = q
        written = s * (scale_factor or {}).get(layer, 1.0)
        scaled[f"{layer}.scale_weight"] = written.reshape(()).to(torch.float32)
        scaled[f"{layer}.scale_input"] = torch.ones((), dtype=torch.float32)
        plain[key] = q.float() * s  # ComfyUI's dequantisation in float32 (the true scale, not a wrong one)
        scales[layer] = float(written)
    save_file(scaled, scaled_path)
    if plain_path is not None:
        save_file(plain, plain_path)
    return scales
