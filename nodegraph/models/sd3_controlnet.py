"""Stability AI's SD3.5 Large ControlNets (blur, canny, depth) as ComfyUI runs them (comfy/cldm/dit_embedder.py
`ControlNetEmbedder`, loaded by comfy/controlnet.py `load_controlnet_sd35`); diffusers 0.42.1's `SD3ControlNetModel`
with `joint_attention_dim=None` computes the same blocks (its `SD3SingleTransformerBlock`).

    x   = transformer.pos_embed.proj(latents) + comfy_sincos(D, h, w)        (B, h·w, D)   the MAIN model's patch conv
    x   = x + pos_embed_input(hint latents)                                  hint: VAE latents of the control image
    c   = timestep MLP(sinusoids(σ·1000)) + pooled-text MLP(pooled prompt)   (B, D)        pooled NOT zeroed
    for each block i: x = block_i(x, c) (adaLN-Zero, image-only attention, no text); r_i = controlnet_blocks[i](x)
    → residuals r_0 … r_{n−1}, each (B, h·w, D), times `strength`

The MMDiT adds residual r_{i // ceil(L / n)} after each of its L joint blocks, the last one included (ComfyUI's
`forward_core_with_concat`; diffusers skips the last block): see `per_block`. The positions are ComfyUI's own sincos
table (`comfy_sincos`), not the main model's stored one, which is what diffusers' pipeline gives its ControlNet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Conv2d, Linear, Model
from nodegraph.models.flux_transformer import AdaNorm, FeedForward, TimeTextEmbedding
from nodegraph.models.sd3_transformer import NORM_EPS, Attention


@dataclass(frozen=True)
class SD3ControlNetConfig:
    """The shape of an SD3.5 ControlNet; defaults are SD3.5 Large's blur / canny / depth files."""

    num_layers: int = 19  # single-stream blocks (the main model has 38 joint blocks: each residual serves 2)
    num_attention_heads: int = 38
    attention_head_dim: int = 64
    in_channels: int = 16  # hint latent channels (the VAE's)
    patch_size: int = 2
    pooled_projection_dim: int = 2048  # CLIP-L pooled ‖ bigG pooled
    control_type: int = -1  # the file's `control_type`: 0 blur, 1 canny, 2 depth (ComfyUI's preprocess_image)

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


def comfy_sincos(dim: int, h: int, w: int) -> torch.Tensor:
    """ComfyUI's `get_2d_sincos_pos_embed_torch(dim, w, h)` (val_center = val_magnitude = 7.5), float32 (h·w, dim):
    per axis n positions evenly spaced over 7.5 ± 7.5·n/min(h, w) (a square grid: 0 … 15), frequencies
    10000^(−k / (dim/4)), k < dim/4, each axis [sin ‖ cos] (dim/2); the table is [columns ‖ rows], tokens row-major."""
    small = min(h, w)

    def axis(n: int) -> torch.Tensor:  # (n,)
        reach = n / small * 7.5
        return torch.linspace(7.5 - reach, 7.5 + reach, n, dtype=torch.float32)

    rows, cols = torch.meshgrid(axis(h), axis(w), indexing="ij")  # (h, w) each
    omega = torch.arange(dim // 4, dtype=torch.float32)
    omega = 1.0 / 10000 ** (omega * (2.0 / (dim // 2)))  # (dim/4,)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (h·w,) → (h·w, dim/2)
        angles = torch.outer(pos.reshape(-1), omega)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1)


class SingleBlock(nn.Module):
    """Image-only DiT block (ComfyUI's DismantledBlock without context = diffusers' SD3SingleTransformerBlock):
    adaLN-Zero (shift, scale, gate for attention and for the MLP), self-attention with biases, no QK norm."""

    def __init__(self, config: SD3ControlNetConfig):
        super().__init__()
        dim = config.inner_dim
        self.norm1 = AdaNorm(dim, 6)
        self.attn = Attention(dim, config.num_attention_heads, config.attention_head_dim, None, added=False,
                              pre_only=False)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # x (B, S, D), c (B, D) → (B, S, D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.norm1(c)  # each (B, 1, D)
        x = x + gate_a * self.attn(_layer_norm(x) * (1 + scale_a) + shift_a)
        return x + gate_m * self.ff(_layer_norm(x) * (1 + scale_m) + shift_m)


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=NORM_EPS)


class SD3ControlNet(Model):
    """Residuals for the SD3 transformer's blocks. Parameter names are diffusers' `SD3ControlNetModel`'s (with
    `use_pos_embed=False`, `joint_attention_dim=None`); SAI's files load through `from_sai_layout`."""

    def __init__(self, config: SD3ControlNetConfig):
        super().__init__()
        self.config = config
        dim, p = config.inner_dim, config.patch_size
        self.time_text_embed = TimeTextEmbedding(dim, config.pooled_projection_dim, guidance=False)
        self.transformer_blocks = nn.ModuleList(SingleBlock(config) for _ in range(config.num_layers))
        self.controlnet_blocks = nn.ModuleList(Linear(dim, dim) for _ in range(config.num_layers))
        self.pos_embed_input = nn.Module()
        self.pos_embed_input.proj = Conv2d(config.in_channels, dim, kernel_size=p, stride=p)

    def embed(self, patch_conv: nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """The noisy latents (B, C, H, W) as this ControlNet's input tokens (B, h·w, D): the main transformer's patch
        convolution (`patch_conv`, its `pos_embed.proj`) plus ComfyUI's sincos table (ControlNetSD35.pre_run)."""
        p = self.config.patch_size
        x = patch_conv(latents).flatten(2).transpose(1, 2)  # (B, h·w, D)
        table = comfy_sincos(self.config.inner_dim, (latents.shape[-2] + 1) // p, (latents.shape[-1] + 1) // p)
        return x + table.to(device=x.device, dtype=x.dtype)

    def forward(self, tokens: torch.Tensor, hint: torch.Tensor, pooled: torch.Tensor, timestep: torch.Tensor,
                strength: float = 1.0) -> list[torch.Tensor]:
        """tokens (B, h·w, D) from `embed`, hint (B, C, H, W) the control image's latents, pooled (B, pooled dim),
        timestep (B,) = σ·1000 → one residual (B, h·w, D) per block, times `strength`."""
        c = self.time_text_embed(timestep, None, pooled)  # (B, D)
        hint_tokens = self.pos_embed_input.proj(hint.to(tokens.dtype)).flatten(2).transpose(1, 2)  # (B, h·w, D)
        x = tokens + hint_tokens
        residuals = []
        for block, out in zip(self.transformer_blocks, self.controlnet_blocks):
            x = block(x, c)
            residuals.append(out(x) * strength)
        return residuals


def per_block(residuals: list[torch.Tensor], main_blocks: int) -> list[torch.Tensor]:
    """ComfyUI's spread of n ControlNet residuals over the MMDiT's `main_blocks` blocks: each repeated
    ceil(main_blocks / n) times in order, the list cut at `main_blocks` (blocks past its end get none)."""
    repeat = math.ceil(main_blocks / len(residuals))
    return [r for r in residuals for _ in range(repeat)][:main_blocks]


def sai_to_ours(state: dict[str, torch.Tensor], head_dim: int = 64) -> tuple[dict[str, torch.Tensor],
                                                                        SD3ControlNetConfig]:
    """SAI's SD3.5 ControlNet file (`transformer_blocks.{i}.attn.qkv`, `.attn.proj`, `.mlp.fc1/fc2`,
    `.adaLN_modulation.1`, `control_type`; time/text embedders and `pos_embed_input`, `controlnet_blocks` under
    diffusers' names) → this model's keys and config (heads = text-embedder width / `head_dim`, 64 in every real
    file, as ComfyUI infers it)."""
    state = dict(state)
    control_type = state.pop("control_type", None)
    out: dict[str, torch.Tensor] = {}
    renames = {"attn.proj": "attn.to_out.0", "mlp.fc1": "ff.net.0.proj", "mlp.fc2": "ff.net.2",
               "adaLN_modulation.1": "norm1.linear"}
    for key, tensor in state.items():
        head, _, leaf = key.rpartition(".")  # leaf: weight / bias
        if head.startswith("transformer_blocks.") and head.endswith(".attn.qkv"):
            for name, part in zip(("to_q", "to_k", "to_v"), tensor.chunk(3, dim=0)):
                out[f"{head[:-3]}{name}.{leaf}"] = part
            continue
        for old, new in renames.items():
            if head.startswith("transformer_blocks.") and head.endswith("." + old):
                head = head[: -len(old)] + new
        out[f"{head}.{leaf}"] = tensor
    width = out["time_text_embed.text_embedder.linear_1.weight"].shape
    layers = len({k.split(".")[1] for k in out if k.startswith("controlnet_blocks.")})
    config = SD3ControlNetConfig(num_layers=layers, num_attention_heads=width[0] // head_dim,
                                 attention_head_dim=head_dim,
                                 in_channels=out["pos_embed_input.proj.weight"].shape[1],
                                 patch_size=out["pos_embed_input.proj.weight"].shape[-1],
                                 pooled_projection_dim=width[1],
                                 control_type=-1 if control_type is None else round(float(control_type)))
    return out, config


SAI_KEYS = ("controlnet_blocks.0.weight", "pos_embed_input.proj.weight", "transformer_blocks.0.adaLN_modulation.1.bias")


def is_sai_sd35(shapes) -> bool:
    """Whether a file's keys are SAI's SD3.5 ControlNet layout (comfy/controlnet.py `load_controlnet_sd35`)."""
    return all(key in shapes for key in SAI_KEYS)


def load_sai_file(path, dtype: torch.dtype = torch.float32, device="cpu") -> SD3ControlNet:
    """An SD3ControlNet from SAI's single file, read through the project's single-file index; every key is checked."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import read_tensors
    from nodegraph.models.errors import CheckpointError
    from nodegraph.models.single_file.loader import opened

    ckpt = opened(path)
    width = ckpt.shapes["time_text_embed.text_embedder.linear_1.weight"][0]
    # heads of 64 as ComfyUI infers them; a file narrower than one such head (a test's) is one head
    state, config = sai_to_ours(read_tensors(ckpt.entries, dtype, torch.device(device)), head_dim=min(64, width))
    with torch.device("meta"):
        model = SD3ControlNet(config)
    expected = set(model.state_dict())
    if set(state) != expected:
        missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        raise CheckpointError(f"{ckpt.path} is not a complete SD3.5 ControlNet: missing {missing}, unexpected {extra}")
    install_weights(model, state)
    return model.eval()
