"""Timestep embeddings shared by the UNets."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Linear


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in DDPM (Ho et al., 2020).

    `t` (B,) → (B, dim) float32; frequency i is exp(-ln(10000)·i / (dim/2 - freq_shift)). The operations
    and their order follow diffusers' `get_timestep_embedding`, so the float32 results are bit-identical.
    """
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))  # (half,)
    args = t[:, None].float() * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)], -1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function for a config's `act_fn` (diffusers' `get_activation` names)."""
    return {"silu": F.silu, "swish": F.silu, "mish": F.mish, "gelu": F.gelu, "relu": F.relu}[name]


class TimestepEmbedding(nn.Module):
    """Sinusoidal features → linear_1 → act → linear_2 (the MLP both UNets put on the timestep).

    With `cond_dim` (LCM-distilled UNets) a bias-free `cond_proj` maps a condition (B, cond_dim), the guidance
    scale's embedding, onto the features before the MLP."""

    def __init__(self, in_dim: int, out_dim: int, act_fn: str = "silu", cond_dim: int | None = None):
        super().__init__()
        self.cond_proj = None if cond_dim is None else Linear(cond_dim, in_dim, bias=False)
        self.linear_1 = Linear(in_dim, out_dim)
        self.act = activation(act_fn)
        self.linear_2 = Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            x = x + self.cond_proj(condition)  # (B, in_dim)
        return self.linear_2(self.act(self.linear_1(x)))


def guidance_scale_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of guidance weights w (B,) → (B, dim) float32, the `timestep_cond` an LCM-distilled
    UNet was trained with (Luo et al. 2023, §4.2; VDM's timestep embedding of 1000·w, `[sin, cos]`, frequencies
    exp(-ln(10000)·i / (dim/2 - 1))). Same operations and order as diffusers' `get_guidance_scale_embedding`."""
    w = w.reshape(-1) * 1000.0
    half = dim // 2
    step = torch.log(torch.tensor(10000.0)) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)  # (half,)
    args = w.to(torch.float32)[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def batch_timesteps(timestep: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """Any timestep form → a (batch,) tensor on `device`.

    Python ints become int64 and Python floats float64 (so 999.5 is not truncated); a 0-d or 1-element tensor
    is broadcast to the batch; a 1-D tensor must have one entry per sample.
    """
    if not torch.is_tensor(timestep):
        dtype = torch.float64 if isinstance(timestep, float) else torch.int64
        if device.type == "mps" and dtype == torch.float64:
            dtype = torch.float32  # MPS has no float64
        timestep = torch.tensor([timestep], dtype=dtype, device=device)
    timestep = timestep.reshape(-1).to(device)
    if timestep.numel() not in (1, batch):
        raise ValueError(f"`timestep` has {timestep.numel()} entries for a batch of {batch}; "
                         f"pass one, or one per sample.")
    return timestep.expand(batch)
