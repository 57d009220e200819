"""The down, mid and up blocks shared by both UNets and the VAE.

One class per role covers diffusers' block types: a block is resnets, each optionally followed by an attention
layer (none: `DownBlock2D`/`UpBlock2D`/the VAE's blocks; `SpatialSelfAttention`: `Attn*Block2D`;
`Transformer2D`: `CrossAttn*Block2D`), and an optional resampler. `make_attention(channels)` builds that layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from nodegraph.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

AttentionFactory = Callable[[int], nn.Module]


@dataclass(frozen=True)
class ResnetArgs:
    """What every resnet of a model shares."""

    temb_channels: int | None
    groups: int
    eps: float
    act_fn: str = "silu"
    dropout: float = 0.0
    output_scale_factor: float = 1.0

    def block(self, in_channels: int, out_channels: int) -> ResnetBlock2D:
        return ResnetBlock2D(in_channels, out_channels, self.temb_channels, self.groups, self.eps, self.act_fn,
                             self.dropout, self.output_scale_factor)


class DownBlock(nn.Module):
    """Returns the block's output and the states the up path concatenates: each layer's output and the
    downsampler's."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, resnet: ResnetArgs,
                 make_attention: AttentionFactory | None = None, downsample_padding: int | None = 1):
        super().__init__()
        self.resnets = nn.ModuleList(resnet.block(in_channels if i == 0 else out_channels, out_channels)
                                     for i in range(num_layers))
        self.attentions = nn.ModuleList(make_attention(out_channels) for _ in range(num_layers)) \
            if make_attention else None
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels, downsample_padding)]) \
            if downsample_padding is not None else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, context: torch.Tensor | None = None,
                residual: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`residual`: a T2I-Adapter's feature, added after the last resnet (+ attention), before its state is
        kept and before the downsampler (diffusers' `additional_residuals`)."""
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            if residual is not None and i == len(self.resnets) - 1:
                x = x + residual
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class MidBlock(nn.Module):
    """resnet, then (attention, resnet) pairs: diffusers' `UNetMidBlock2D` and `UNetMidBlock2DCrossAttn`.

    `make_attention=None` keeps the pairs' slots empty (`add_attention=False`), as diffusers does.
    """

    def __init__(self, channels: int, resnet: ResnetArgs, make_attention: AttentionFactory | None, num_layers: int = 1):
        super().__init__()
        self.resnets = nn.ModuleList(resnet.block(channels, channels) for _ in range(num_layers + 1))
        self.attentions = nn.ModuleList(make_attention(channels) if make_attention else None for _ in range(num_layers))

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, context: torch.Tensor | None = None
                ) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        for attention, resnet in zip(self.attentions, self.resnets[1:]):
            if attention is not None:
                x = attention(x, context)
            x = resnet(x, temb)
        return x


class UpBlock(nn.Module):
    """Each resnet takes the running state concatenated on channels with `skip_channels[i]` channels popped
    from the down path's states (none in the VAE decoder), then an optional 2× upsampler."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: list[int], resnet: ResnetArgs,
                 make_attention: AttentionFactory | None = None, add_upsample: bool = True):
        super().__init__()
        self.resnets = nn.ModuleList(resnet.block((in_channels if i == 0 else out_channels) + skip, out_channels)
                                     for i, skip in enumerate(skip_channels))
        self.attentions = nn.ModuleList(make_attention(out_channels) for _ in skip_channels) if make_attention else None
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if add_upsample else None
        self.takes_skips = any(skip_channels)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor] | None = None, temb: torch.Tensor | None = None,
                context: torch.Tensor | None = None, upsample_size: bool = False) -> torch.Tensor:
        """`skips` is the down path's stack; this block pops one state per resnet. With `upsample_size`, the
        upsampler outputs the size of the next state on the stack (inputs not divisible by 2^levels)."""
        for i, resnet in enumerate(self.resnets):
            if self.takes_skips:
                x = torch.cat([x, skips.pop()], dim=1)  # (B, C + C_skip, H, W)
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, tuple(skips[-1].shape[-2:]) if upsample_size else None)
        return x
