"""Unconditional UNet of DDPM (Ho et al., 2020), matching diffusers' `UNet2DModel` (google/ddpm-*)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nodegraph.models.attention import SpatialSelfAttention
from nodegraph.models.base import Conv2d, GroupNorm, Model
from nodegraph.models.config import UNet2DConfig, parse_config
from nodegraph.models.embeddings import TimestepEmbedding, activation, batch_timesteps, timestep_embedding
from nodegraph.models.unet_blocks import DownBlock, MidBlock, ResnetArgs, UpBlock


class UNet2DModel(Model):
    """ε-prediction UNet: `forward(sample (B, C, H, W), timestep) -> (B, C_out, H, W)`.

    `AttnDownBlock2D`/`AttnUpBlock2D` add a `SpatialSelfAttention` after each resnet; `attention_head_dim` is the
    size of each head (None: one head as wide as the block).
    """

    def __init__(self, config: UNet2DConfig):
        super().__init__()
        self.config = c = config
        ch = c.block_out_channels
        temb = c.time_embedding_dim or ch[0] * 4
        resnet = ResnetArgs(temb, c.norm_num_groups, c.norm_eps, c.act_fn, c.dropout)

        def attention(block_type: str | None, groups: int, scale: float = 1.0):
            if block_type not in ("AttnDownBlock2D", "AttnUpBlock2D", "UNetMidBlock2D"):
                return None
            return lambda channels: SpatialSelfAttention(channels, c.attention_head_dim or channels, groups,
                                                         c.norm_eps, scale)

        self.conv_in = Conv2d(c.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], c.layers_per_block, resnet, attention(kind, c.norm_num_groups),
                      c.downsample_padding if i < len(ch) - 1 else None)
            for i, kind in enumerate(c.down_block_types)
        )
        self.mid_block = None
        if c.mid_block_type is not None:
            mid = ResnetArgs(temb, c.norm_num_groups, c.norm_eps, c.act_fn, c.dropout, c.mid_block_scale_factor)
            mid_attention = attention(c.mid_block_type, c.attn_norm_num_groups or c.norm_num_groups,
                                      c.mid_block_scale_factor) if c.add_attention else None
            self.mid_block = MidBlock(ch[-1], mid, mid_attention)
        rev = ch[::-1]
        self.up_blocks = nn.ModuleList(
            UpBlock(rev[max(i - 1, 0)], rev[i], [rev[i]] * c.layers_per_block + [rev[min(i + 1, len(ch) - 1)]],
                    resnet, attention(kind, c.norm_num_groups), add_upsample=i < len(ch) - 1)
            for i, kind in enumerate(c.up_block_types)
        )
        self.conv_norm_out = GroupNorm(c.norm_num_groups, ch[0], eps=c.norm_eps)
        self.conv_act = activation(c.act_fn)
        self.conv_out = Conv2d(ch[0], c.out_channels, 3, padding=1)

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> "UNet2DModel":
        return cls(parse_config(UNet2DConfig, raw))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: None = None) -> torch.Tensor:
        """`encoder_hidden_states` exists so that both UNets take the same call; this one is unconditional."""
        if encoder_hidden_states is not None:
            raise ValueError("this UNet2DModel is unconditional: it takes no `encoder_hidden_states` (text "
                             "conditioning needs a UNet2DConditionModel, e.g. Stable Diffusion's).")
        c = self.config
        if c.center_input_sample:
            sample = 2 * sample - 1.0
        t = batch_timesteps(timestep, sample.shape[0], sample.device)  # (B,)
        t_features = timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
        temb = self.time_embedding(t_features.to(self.dtype))  # (B, 4·C0)

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(x, temb)
            skips += states
        if self.mid_block is not None:
            x = self.mid_block(x, temb)
        for block in self.up_blocks:
            x = block(x, skips, temb)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))
