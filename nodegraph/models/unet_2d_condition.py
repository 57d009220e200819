"""Text-conditioned UNet of Stable Diffusion 1.x/2.x (Rombach et al., 2022) and SDXL (Podell et al., 2023),
matching diffusers' `UNet2DConditionModel`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nodegraph.models.attention import Transformer2D
from nodegraph.models.base import Conv2d, GroupNorm, Model
from nodegraph.models.config import UNet2DConditionConfig, parse_config
from nodegraph.models.embeddings import TimestepEmbedding, activation, batch_timesteps, timestep_embedding
from nodegraph.models.unet_blocks import DownBlock, MidBlock, ResnetArgs, UpBlock


class UNet2DConditionModel(Model):
    """ε- (or v-) prediction UNet: `forward(sample (B, C, H, W), timestep, encoder_hidden_states (B, L, D))`.

    `CrossAttn*Block2D` add a `Transformer2D` after each resnet; `attention_head_dim[i]` is the number of heads
    of block i (diffusers' legacy name), the head size being channels // heads.

    SDXL (`addition_embed_type="text_time"`, Podell et al. 2023, §2.2 "micro-conditioning") also takes
    `text_embeds` (B, pooled) and `time_ids` (B, n_ids); both are required then.
    """

    def __init__(self, config: UNet2DConditionConfig):
        super().__init__()
        self.config = c = config
        ch, n, layers, only_cross, temb, resnet, transformer = block_settings(c)
        self.conv_in = Conv2d(c.in_channels, ch[0], c.conv_in_kernel, padding=(c.conv_in_kernel - 1) // 2)
        self.time_embedding = TimestepEmbedding(ch[0], temb, c.act_fn, c.time_cond_proj_dim)
        self.add_embedding = None
        if c.addition_embed_type == "text_time":
            self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, temb, c.act_fn)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], layers[i], resnet, transformer(kind, i, only_cross[i]),
                      c.downsample_padding if i < n - 1 else None)
            for i, kind in enumerate(c.down_block_types)
        )
        self.mid_block = None
        if c.mid_block_type is not None:
            mid = ResnetArgs(temb, c.norm_num_groups, c.norm_eps, c.act_fn, c.dropout, c.mid_block_scale_factor)
            self.mid_block = MidBlock(ch[-1], mid, transformer(c.mid_block_type, n - 1))
        # the up path mirrors the down path: block i of it uses the per-block settings of down block n-1-i
        rev = ch[::-1]
        self.up_blocks = nn.ModuleList(
            UpBlock(rev[max(i - 1, 0)], rev[i], [rev[i]] * layers[n - 1 - i] + [rev[min(i + 1, n - 1)]], resnet,
                    transformer(kind, n - 1 - i, only_cross[n - 1 - i]), add_upsample=i < n - 1)
            for i, kind in enumerate(c.up_block_types)
        )
        self.conv_norm_out = GroupNorm(c.norm_num_groups, ch[0], eps=c.norm_eps)
        self.conv_act = activation(c.act_fn)
        self.conv_out = Conv2d(ch[0], c.out_channels, c.conv_out_kernel, padding=(c.conv_out_kernel - 1) // 2)

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> "UNet2DConditionModel":
        return cls(parse_config(UNet2DConditionConfig, raw))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor | None = None, text_embeds: torch.Tensor | None = None,
                time_ids: torch.Tensor | None = None, down_residuals: list[torch.Tensor] | None = None,
                mid_residual: torch.Tensor | None = None, timestep_cond: torch.Tensor | None = None,
                adapter_residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`down_residuals` (one per skip state) and `mid_residual` are a ControlNet's outputs: added to the
        skip states after the whole down pass and to the mid block's output, as diffusers does.
        `adapter_residuals` (one per down block) are a T2I-Adapter's features, added inside each down block
        (`DownBlock`), as diffusers' `down_intrablock_additional_residuals` (SD1.x: one per block).
        `timestep_cond` (B, time_cond_proj_dim): an LCM-distilled UNet's guidance embedding (ignored by others,
        as in diffusers)."""
        c = self.config
        if encoder_hidden_states is None:
            raise ValueError(f"this UNet2DConditionModel needs `encoder_hidden_states` (B, tokens, "
                             f"{c.per_block('cross_attention_dim')[-1]}), the text encoder's output.")
        if self.add_embedding is not None and (text_embeds is None or time_ids is None):
            raise ValueError("this is an SDXL UNet (`addition_embed_type` 'text_time'): it needs `text_embeds` "
                             "(the pooled text embedding) and `time_ids` (sizes, crop, [aesthetic score]). Run SDXL "
                             "checkpoints with graphs/sdxl.yaml (refiners as `refiner` of graphs/sdxl_refiner.yaml), "
                             "or pass a Stable Diffusion 1.x/2.x checkpoint as `model` here.")
        # Sizes not divisible by 2^(number of upsamplers) make the up path resize to each skip's exact size.
        upsample_size = any(s % 2 ** (len(self.up_blocks) - 1) for s in sample.shape[-2:])
        if c.center_input_sample:
            sample = 2 * sample - 1.0
        t = batch_timesteps(timestep, sample.shape[0], sample.device)  # (B,)
        t_features = timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
        cond = None
        if timestep_cond is not None and self.time_embedding.cond_proj is not None:
            cond = timestep_cond.to(sample.dtype)  # (B, time_cond_proj_dim)
        temb = self.time_embedding(t_features.to(sample.dtype), cond)  # (B, 4·C0)
        if self.add_embedding is not None:
            temb = temb + added_time_embedding(self, text_embeds, time_ids, temb.dtype)
        context = encoder_hidden_states  # (B, L, D)

        x = self.conv_in(sample)
        skips = [x]
        for k, block in enumerate(self.down_blocks):
            x, states = block(x, temb, context, None if adapter_residuals is None else adapter_residuals[k])
            skips += states
        if down_residuals is not None:
            skips = [s + r for s, r in zip(skips, down_residuals, strict=True)]
        if self.mid_block is not None:
            x = self.mid_block(x, temb, context)
        if mid_residual is not None:
            x = x + mid_residual
        for block in self.up_blocks:
            x = block(x, skips, temb, context, upsample_size)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


def added_time_embedding(model: nn.Module, text_embeds: torch.Tensor, time_ids: torch.Tensor,
                     dtype: torch.dtype) -> torch.Tensor:
    """SDXL's `text_time` embedding of `model` (the UNet, or a ControlNet built like it):
    MLP(cat(pooled text (B, P), sinusoids of each time id (B, n_ids·D))) → (B, 4·C0)."""
    c = model.config
    B = text_embeds.shape[0]
    ids = time_ids.reshape(-1)  # (B·n_ids,)
    features = timestep_embedding(ids, c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift)
    features = features.reshape(B, -1)  # (B, n_ids·D)
    expected = c.projection_class_embeddings_input_dim
    if text_embeds.shape[-1] + features.shape[-1] != expected:
        raise ValueError(f"the SDXL UNet's added embedding takes {expected} features, but the pooled text "
                         f"({text_embeds.shape[-1]}) and {time_ids.shape[-1]} time ids × "
                         f"{c.addition_time_embed_dim} give {text_embeds.shape[-1] + features.shape[-1]}: "
                         f"base models take 6 time ids, refiners 5.")
    return model.add_embedding(torch.cat([text_embeds, features], dim=-1).to(dtype))


def block_settings(c: UNet2DConditionConfig):
    """What building the blocks needs, shared by the UNet and the ControlNet (whose encoder half is the UNet's):
    widths, block count, per-block resnet counts and cross-attention flags, the time-embedding width, the
    resnet arguments, and `transformer(block_type, i, only_cross)`: a factory of block i's `Transformer2D`, or
    None for block types without attention."""
    ch, n = c.block_out_channels, len(c.block_out_channels)
    heads, context_dims = c.per_block("attention_head_dim"), c.per_block("cross_attention_dim")
    layers, depths = c.per_block("layers_per_block"), c.per_block("transformer_layers_per_block")
    only_cross = c.per_block("only_cross_attention")
    temb = c.time_embedding_dim or ch[0] * 4
    resnet = ResnetArgs(temb, c.norm_num_groups, c.norm_eps, c.act_fn, c.dropout)

    def transformer(block_type: str | None, i: int, only_cross_attention: bool = False):
        if block_type not in ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D", "UNetMidBlock2DCrossAttn"):
            return None
        return lambda channels: Transformer2D(channels, heads[i], context_dims[i], c.norm_num_groups, depths[i],
                                              c.use_linear_projection, only_cross_attention, c.dropout)

    return ch, n, layers, only_cross, temb, resnet, transformer
