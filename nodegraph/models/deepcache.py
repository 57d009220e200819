"""DeepCache for text-conditioned UNets: Ma, Fang & Wang 2023, "DeepCache: Accelerating Diffusion Models for
Free" (Algorithm 1, uniform 1:N strategy).

The high-level features of a UNet's up path change little between adjacent denoising steps. On a full step the
whole UNet runs and the input of the shallowest skip branch's up layer is kept; on the following steps only the
shallow branch runs: conv_in, the first layer of the first down block, the last two layers of the last up block
(fed with the kept deep features), conv_out. This is DeepCache's default branch for Stable Diffusion
(`cache_block_id=0`, `cache_layer_id=0`): the skips it needs are conv_in's output and that first layer's.

Shapes below: B batch (2B with a CFG batch), C0 = block_out_channels[0], h, w latent size.
"""

from __future__ import annotations

from typing import Any

import torch

from nodegraph.models.embeddings import batch_timesteps, timestep_embedding
from nodegraph.models.unet_2d_condition import UNet2DConditionModel, added_time_embedding

SUPPORTED = "text-conditioned UNets (UNet2DConditionModel: Stable Diffusion 1.x/2.x, SDXL, LCM)"


def check_supported(model: Any) -> None:
    """Raise a ValueError naming what DeepCache supports when `model` is not one of them."""
    if not isinstance(model, UNet2DConditionModel):
        raise ValueError(f"DeepCache supports {SUPPORTED}; this model is a {type(model).__name__}. Use `cache: none` "
                         "for it (transformer models such as Z-Image get their own caches).")
    first = model.up_blocks[-1]
    if len(first.resnets) < 2 or not first.takes_skips:
        raise ValueError(f"DeepCache needs a last up block with at least two skip layers; this "
                         f"{type(model).__name__} has {len(first.resnets)}.")


def _branch_layer(unet: UNet2DConditionModel) -> int:
    """Index of the last up block's layer that takes the first down layer's output as its skip (it takes
    conv_in's output in the layer after)."""
    return len(unet.up_blocks[-1].resnets) - 2


def full_forward(unet: UNet2DConditionModel, sample: torch.Tensor, timestep: Any, context: torch.Tensor,
                 **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The ordinary forward (same numbers as `unet(...)`) and the deep features to reuse: the running state
    entering the shallow branch's up layer, before its skip is concatenated, (B, C_deep, h, w)."""
    layer = unet.up_blocks[-1].resnets[_branch_layer(unet)]
    skip_channels = unet.config.block_out_channels[0]
    kept: list[torch.Tensor] = []

    def keep(module, args):
        kept.append(args[0][:, : args[0].shape[1] - skip_channels])  # drop the skip half of cat([x, skip])

    handle = layer.register_forward_pre_hook(keep)
    try:
        out = unet(sample, timestep, encoder_hidden_states=context, **kwargs)
    finally:
        handle.remove()
    return out, kept[-1]


def _time_embedding(unet: UNet2DConditionModel, sample: torch.Tensor, timestep: Any,
                    timestep_cond: torch.Tensor | None, text_embeds: torch.Tensor | None,
                    time_ids: torch.Tensor | None) -> torch.Tensor:
    """(B, 4·C0): the timestep embedding exactly as UNet2DConditionModel.forward computes it."""
    c = unet.config
    t = batch_timesteps(timestep, sample.shape[0], sample.device)  # (B,)
    t_features = timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
    cond = None
    if timestep_cond is not None and unet.time_embedding.cond_proj is not None:
        cond = timestep_cond.to(sample.dtype)
    temb = unet.time_embedding(t_features.to(sample.dtype), cond)
    if unet.add_embedding is not None:
        temb = temb + added_time_embedding(unet, text_embeds, time_ids, temb.dtype)
    return temb


def shallow_forward(unet: UNet2DConditionModel, sample: torch.Tensor, timestep: Any, context: torch.Tensor,
                    deep: torch.Tensor, timestep_cond: torch.Tensor | None = None,
                    text_embeds: torch.Tensor | None = None, time_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The UNet's output with the deep features `deep` (from `full_forward` at an earlier step) in place of
    everything below the shallowest skip branch."""
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    temb = _time_embedding(unet, sample, timestep, timestep_cond, text_embeds, time_ids)  # (B, 4·C0)
    down, up = unet.down_blocks[0], unet.up_blocks[-1]
    first = unet.conv_in(sample)  # (B, C0, h, w): the skip of the last up layer
    x = down.resnets[0](first, temb)
    if down.attentions is not None:
        x = down.attentions[0](x, context)  # (B, C0, h, w): the skip of the branch layer
    x = torch.cat([deep.to(x.dtype), x], dim=1)  # (B, C_deep + C0, h, w)
    layer = _branch_layer(unet)
    for i, skip in ((layer, None), (layer + 1, first)):
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = up.resnets[i](x, temb)
        if up.attentions is not None:
            x = up.attentions[i](x, context)
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(x)))  # (B, C_out, h, w)
