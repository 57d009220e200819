"""Residual block and the 2× resamplers of the UNets and the VAE (diffusers' `ResnetBlock2D`, `Downsample2D`,
`Upsample2D`; attribute names match their state-dict keys)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Conv2d, GroupNorm, Linear
from nodegraph.models.embeddings import activation


class ResnetBlock2D(nn.Module):
    """norm1 → act → conv1 (+ time projection) → norm2 → act → dropout → conv2, plus a shortcut.

    `temb_channels=None` (the VAE) leaves out the time projection. The sum is divided by `output_scale_factor`.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int | None, groups: int, eps: float,
                 act_fn: str = "silu", dropout: float = 0.0, output_scale_factor: float = 1.0):
        super().__init__()
        self.norm1 = GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = Linear(temb_channels, out_channels) if temb_channels is not None else None
        self.norm2 = GroupNorm(groups, out_channels, eps=eps)
        self.dropout = dropout
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = activation(act_fn)
        self.conv_shortcut = Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))  # (B, C_out, H, W)
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(self.act(temb))[:, :, None, None]  # temb (B, T) → (B, C_out, 1, 1)
        h = self.act(self.norm2(h))
        if self.training and self.dropout:  # dropout is the identity otherwise: not called, as in every inference
            h = F.dropout(h, self.dropout, True)
        h = self.conv2(h)
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        out = shortcut + h
        # x / 1.0 is x exactly: skipping it (every SD model) saves a pass over the activations, not a bit
        return out if self.output_scale_factor == 1.0 else out / self.output_scale_factor


class Downsample2D(nn.Module):
    """Stride-2 3×3 conv. With `padding=0` (ddpm-cat, the VAE encoder) the input is padded on the right and
    bottom only, which shifts the sampling grid by half a pixel compared with `padding=1`."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.padding = padding
        self.conv = Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour ×2 (or to `size`, when the encoder's skip had an odd size), then a 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)
