"""ControlNet (Zhang, Rao & Agrawala, 2023, "Adding Conditional Control to Text-to-Image Diffusion Models"),
matching diffusers' `ControlNetModel`.

A trainable copy of the UNet's encoder (conv_in, time embedding, down blocks, mid block) reads the noisy latents
plus an embedded control image, and hands one residual per skip connection and one for the mid block to the
UNet; each goes through a zero-initialised 1×1 convolution, so an untrained ControlNet changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Conv2d, Model, install_weights
from nodegraph.models.config import UNet2DConditionConfig, parse_config
from nodegraph.models.embeddings import TimestepEmbedding, activation, batch_timesteps, timestep_embedding
from nodegraph.models.errors import CheckpointError
from nodegraph.models.unet_2d_condition import added_time_embedding, block_settings
from nodegraph.models.unet_blocks import DownBlock, MidBlock, ResnetArgs

_UP_OF = {"CrossAttnDownBlock2D": "CrossAttnUpBlock2D", "DownBlock2D": "UpBlock2D"}


@dataclass(frozen=True)
class ControlNetConfig(UNet2DConditionConfig):
    """diffusers `ControlNetModel`: the UNet's encoder settings plus the control-image embedding's."""

    conditioning_channels: int = 3
    controlnet_conditioning_channel_order: str = "rgb"  # "bgr" checkpoints flip the image's channels first
    # 2^(len − 1) is how much the embedding shrinks the image: 8 for SD's VAE (16, 32, 96, 256).
    conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    global_pool_conditions: bool = False  # shuffle-style ControlNets: residuals averaged over space

    _CLASS: ClassVar[str] = "ControlNetModel"
    _CHOICES: ClassVar[dict[str, tuple]] = {**UNet2DConditionConfig._CHOICES,
                                           "controlnet_conditioning_channel_order": ("rgb", "bgr")}
    _ONLY: ClassVar[dict[str, tuple]] = {**UNet2DConditionConfig._ONLY, "time_cond_proj_dim": (None,)}


def parse_controlnet_config(raw: dict[str, Any], where: str = "config.json") -> ControlNetConfig:
    """A ControlNet config.json → ControlNetConfig. It has no up path; the mirror of its down path is filled in
    so the shared UNet checks (one entry per block) apply."""
    down = raw.get("down_block_types", ControlNetConfig.down_block_types)
    if "up_block_types" not in raw and isinstance(down, (list, tuple)):
        raw = {**raw, "up_block_types": [_UP_OF.get(kind, kind) for kind in reversed(down)]}
    return parse_config(ControlNetConfig, raw, where)


class ControlNetConditioningEmbedding(nn.Module):
    """Control image (B, 3, H, W) → (B, C0, H/2^k, W/2^k): conv → SiLU, then k pairs of (conv, stride-2 conv)
    with SiLU, then the zero-initialised conv_out."""

    def __init__(self, out_channels: int, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        self.conv_in = Conv2d(in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            self.blocks.append(Conv2d(c_in, c_in, 3, padding=1))
            self.blocks.append(Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.conv_out = Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(image))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class ControlNetModel(Model):
    """`forward(sample, timestep, encoder_hidden_states, control_image, scale)` → (down residuals, mid residual).

    The residual list matches the UNet's skip stack (conv_in output, then every resnet/attention and
    downsampler output of the down blocks); all are multiplied by `scale`. In guess mode (lllyasviel's
    "guess mode", diffusers' `guess_mode=True`) they are multiplied by `scale · logspace(−1, 0, n + 1)` instead,
    shallow skips weakest (0.1×) and the mid block strongest (1×), so that the ControlNet can steer without a
    prompt; global-pool ControlNets keep the plain `scale`.
    """

    def __init__(self, config: ControlNetConfig):
        super().__init__()
        self.config = c = config
        ch, n, layers, only_cross, temb, resnet, transformer = block_settings(c)
        self.conv_in = Conv2d(c.in_channels, ch[0], c.conv_in_kernel, padding=(c.conv_in_kernel - 1) // 2)
        self.time_embedding = TimestepEmbedding(ch[0], temb, c.act_fn)
        self.add_embedding = None
        if c.addition_embed_type == "text_time":
            self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, temb, c.act_fn)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            ch[0], c.conditioning_channels, c.conditioning_embedding_out_channels)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], layers[i], resnet, transformer(kind, i, only_cross[i]),
                      c.downsample_padding if i < n - 1 else None)
            for i, kind in enumerate(c.down_block_types)
        )
        # one 1×1 "zero convolution" per skip state, in the order the down path produces them
        skip_channels = [ch[0]]
        for i in range(n):
            skip_channels += [ch[i]] * layers[i] + ([ch[i]] if i < n - 1 else [])
        self.controlnet_down_blocks = nn.ModuleList(Conv2d(k, k, 1) for k in skip_channels)
        mid = ResnetArgs(temb, c.norm_num_groups, c.norm_eps, c.act_fn, c.dropout, c.mid_block_scale_factor)
        self.mid_block = MidBlock(ch[-1], mid, transformer(c.mid_block_type, n - 1))
        self.controlnet_mid_block = Conv2d(ch[-1], ch[-1], 1)
        self.act = activation(c.act_fn)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int, encoder_hidden_states: torch.Tensor,
                control_image: torch.Tensor, scale: float = 1.0, text_embeds: torch.Tensor | None = None,
                time_ids: torch.Tensor | None = None, guess_mode: bool = False,
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        c = self.config
        if self.add_embedding is not None and (text_embeds is None or time_ids is None):
            raise ValueError("this is an SDXL ControlNet: it needs `text_embeds` and `time_ids` like the SDXL UNet")
        if c.controlnet_conditioning_channel_order == "bgr":
            control_image = control_image.flip(1)
        t = batch_timesteps(timestep, sample.shape[0], sample.device)  # (B,)
        t_features = timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
        temb = self.time_embedding(t_features.to(sample.dtype))  # (B, 4·C0)
        if self.add_embedding is not None:
            # same added embedding as the SDXL UNet (pooled text + time-id sinusoids → MLP)
            temb = temb + added_time_embedding(self, text_embeds, time_ids, temb.dtype)

        x = self.conv_in(sample) + self.controlnet_cond_embedding(control_image)  # (B, C0, h, w)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(x, temb, encoder_hidden_states)
            skips += states
        x = self.mid_block(x, temb, encoder_hidden_states)

        down = [conv(s) for conv, s in zip(self.controlnet_down_blocks, skips)]
        mid = self.controlnet_mid_block(x)
        if guess_mode and not c.global_pool_conditions:
            # one float32 factor per skip, then the mid block's: 0.1 … 1.0 (times `scale`), as diffusers does
            scales = torch.logspace(-1, 0, len(down) + 1, device=sample.device) * scale  # (n + 1,)
            down = [r * s for r, s in zip(down, scales)]
            mid = mid * scales[-1]
        else:
            down = [r * scale for r in down]
            mid = mid * scale
        if c.global_pool_conditions:
            down = [r.mean(dim=(2, 3), keepdim=True) for r in down]
            mid = mid.mean(dim=(2, 3), keepdim=True)
        return down, mid


def load_controlnet(source: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu", revision: str | None = None, variant: str | None = None, allow_pickle: bool = False,
                    config: str | None = None) -> ControlNetModel:
    """Load a ControlNet: a diffusers folder or hub repo holding config.json and diffusion_pytorch_model.safetensors
    (at its root or in `controlnet/`), or one file in the original `control_model.*` layout (`config`: a
    diffusers ControlNet folder whose config.json to use instead of the inferred one; see
    models/adapters/controlnet.py). Loading is strict: a missing, unexpected or mis-shaped weight is a
    `CheckpointError`."""
    from nodegraph.models.checkpoint import (DIFFUSERS_WEIGHTS, default_dtype, find_weights, fit, read_entries,
                                             read_tensors)
    from nodegraph.models.single_file import is_single_file
    from nodegraph.models.sources import resolve_source

    if is_single_file(source):
        from nodegraph.models.adapters.controlnet import load_controlnet_file
        from nodegraph.models.sd3_controlnet import is_sai_sd35, load_sai_file
        from nodegraph.models.single_file.loader import opened

        if is_sai_sd35(opened(source, allow_pickle).shapes):  # SAI's SD3.5 Large blur / canny / depth
            return load_sai_file(source, default_dtype(dtype), device)

        return load_controlnet_file(source, config=config, dtype=default_dtype(dtype), device=device,
                                    allow_pickle=allow_pickle)
    src = resolve_source(source, revision)
    folder = "controlnet" if src.has_folder("controlnet") and "config.json" not in src.files("") else ""
    config_file = f"{folder}/config.json" if folder else "config.json"
    if "config.json" not in src.files(folder):
        raise CheckpointError(f"{src.where(config_file)} is missing: a ControlNet is a folder (or hub repo) with "
                              "config.json and diffusion_pytorch_model.safetensors, as diffusers saves it.")
    raw = src.read_json(config_file)
    where = src.where(config_file)
    kind = raw.get("_class_name")
    if kind != "ControlNetModel":
        raise CheckpointError(f"{where} describes a {kind}, not a ControlNetModel: pass a ControlNet as "
                              "`controlnet` (and the Stable Diffusion checkpoint as `model`).")
    config = parse_controlnet_config(raw, where)
    with torch.device("meta"):
        model = ControlNetModel(config)
    weights = find_weights(src, folder, DIFFUSERS_WEIGHTS, variant, allow_pickle)
    fitted = fit(read_entries(src, weights), model, lambda key: key, f"the ControlNetModel of {where}")
    install_weights(model, read_tensors(fitted, default_dtype(dtype), torch.device(device)))
    return model.eval()


def controlnet_family(config: ControlNetConfig | UNet2DConditionConfig) -> tuple[Any, ...]:
    """What a ControlNet and a UNet must share to work together: text width, SDXL-ness and block widths."""
    return (config.per_block("cross_attention_dim")[-1], config.addition_embed_type,
            tuple(config.block_out_channels))


def check_family(controlnet, unet) -> None:
    """Refuse a ControlNet trained for another model family before any step runs (graph nodes and ComfyUI's
    ControlNet chain both call this)."""

    def describe(config) -> str:
        kind = "SDXL" if config.addition_embed_type == "text_time" else "Stable Diffusion 1.x/2.x"
        width = config.per_block("cross_attention_dim")[-1]
        return f"{kind}, text width {width}, blocks {list(config.block_out_channels)}"

    if controlnet_family(controlnet.config) != controlnet_family(unet.config):
        raise ValueError(f"`controlnet` was made for another model family ({describe(controlnet.config)}) than "
                         f"`model` ({describe(unet.config)}): use a ControlNet trained for this model "
                         "(SD1.5 ControlNets with SD1.x, SDXL ones with graphs/sdxl_controlnet.yaml).")
