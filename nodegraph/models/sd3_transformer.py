"""Stable Diffusion 3 / 3.5's MMDiT (Esser et al., 2024, "Scaling rectified flow transformers for high-resolution
image synthesis"; SD3.5 Medium's MMDiT-X adds a second, image-only self-attention to its first blocks), as
diffusers 0.42.1's `SD3Transformer2DModel` computes it.

Same parameter and buffer names and shapes as diffusers (a diffusers folder loads strictly; tests/sd3 checks the
real-size SD3.5 Medium and Large key sets on the meta device) and the same operations in the same order, so
float32 outputs equal diffusers' (tests/sd3/test_sd3_transformer.py).

    img = Conv2d k=p s=p (latents) + centre crop of the stored 2D sincos grid        (B, h·w, D)
    txt = context_embedder(CLIP-L ‖ CLIP-G ‖ T5 states)                             (B, S_txt, D)
    c   = timestep MLP(sinusoids(t)) + pooled-text MLP(CLIP-L ‖ CLIP-G pooled)      (B, D)
    joint blocks: adaLN-Zero per stream, one attention over [img, txt] (image FIRST, unlike Flux), no RoPE;
                  the last block is "context pre-only": its text stream only feeds that attention
    out = unpatchify(proj_out(LayerNorm(img)·(1 + scale) + shift))                   (B, C, H, W)

The timestep is t in [0, 1000] (sigma·1000), not divided: the pipeline passes the scheduler's timestep as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Conv2d, Linear, Model
from nodegraph.models.dit_blocks import RMSNorm, attention
from nodegraph.models.flux_transformer import AdaNorm, FeedForward, FinalNorm, TimeTextEmbedding

NORM_EPS = 1e-6  # every LayerNorm and QK RMSNorm of the model
POS_THETA = 10000.0  # the sincos grid's base (MAE / DiT)


@dataclass(frozen=True)
class SD3TransformerConfig:
    """diffusers' `SD3Transformer2DModel` config.json; defaults are its class defaults (SD3's 2B layout)."""

    sample_size: int = 128  # latent size of training: sets the sincos grid's base size (sample_size / patch)
    patch_size: int = 2  # latent pixels per token side
    in_channels: int = 16  # VAE latent channels
    num_layers: int = 18  # joint (MMDiT) blocks; the last is context-pre-only
    attention_head_dim: int = 64
    num_attention_heads: int = 18  # token width = heads · head_dim
    joint_attention_dim: int = 4096  # text-state width (T5-XXL's; the CLIP states are zero-padded to it)
    caption_projection_dim: int = 1152  # context_embedder's output: must be the token width
    pooled_projection_dim: int = 2048  # CLIP-L pooled (768) ‖ CLIP-G pooled (1280)
    out_channels: int = 16
    pos_embed_max_size: int = 96  # side of the stored sincos grid (tokens); larger latents are refused
    dual_attention_layers: tuple[int, ...] = ()  # blocks with MMDiT-X's extra image self-attention (3.5 Medium)
    qk_norm: str | None = None  # None (SD3) or "rms_norm" (SD3.5): per-head RMSNorm of queries and keys

    _CLASS: ClassVar[str] = "SD3Transformer2DModel"
    _CHOICES: ClassVar[dict[str, tuple]] = {"qk_norm": (None, "rms_norm")}
    _ONLY: ClassVar[dict[str, tuple]] = {}

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def check(self, fail) -> None:
        """Values that cannot build a model; `fail(key, value, allowed)` makes the error."""
        for key in ("sample_size", "patch_size", "in_channels", "num_layers", "attention_head_dim",
                    "num_attention_heads", "joint_attention_dim", "pooled_projection_dim", "out_channels",
                    "pos_embed_max_size"):
            if getattr(self, key) <= 0:
                raise fail(key, getattr(self, key), "a positive integer")
        if self.caption_projection_dim != self.inner_dim:
            raise fail("caption_projection_dim", self.caption_projection_dim,
                       f"num_attention_heads · attention_head_dim = {self.inner_dim} (the token width)")
        if self.inner_dim % 4:
            raise fail("num_attention_heads", self.num_attention_heads, "a token width divisible by 4 (sincos grid)")


def sincos_grid(dim: int, grid: int, base_size: int) -> torch.Tensor:
    """The 2D sincos position table of a grid×grid token square: (1, grid², dim) float32, row-major tokens; the
    first dim/2 features encode the column, the last dim/2 the row, each as [sin, cos] of pos·10000^(-k/(dim/4))
    with pos = index · base_size / grid (diffusers' `get_2d_sincos_pos_embed`, float32 positions, float64
    angles). Real checkpoints store this table (`pos_embed.pos_embed`), so it is only the initial value."""
    positions = torch.arange(grid, dtype=torch.float32) / (grid / base_size)  # (grid,)
    omega = 1.0 / POS_THETA ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # (dim/4,)

    def axis(pos: torch.Tensor) -> torch.Tensor:  # (grid²,) → (grid², dim/2)
        angles = torch.outer(pos, omega)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(positions, positions, indexing="ij")  # (grid, grid) each
    return torch.cat([axis(cols.flatten()), axis(rows.flatten())], dim=1).float().unsqueeze(0)


class PatchEmbed(nn.Module):
    """Latents (B, C, H, W) → tokens (B, H/p · W/p, D): a strided convolution plus the stored sincos table cropped
    around its centre (top = (max − H/p) // 2, left likewise). Keys `proj`, `pos_embed` as diffusers'."""

    def __init__(self, config: SD3TransformerConfig):
        super().__init__()
        p, dim = config.patch_size, config.inner_dim
        self.patch_size, self.max_size = p, config.pos_embed_max_size
        self.proj = Conv2d(config.in_channels, dim, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", sincos_grid(dim, self.max_size, config.sample_size // p))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h, w = latents.shape[-2] // self.patch_size, latents.shape[-1] // self.patch_size
        if h > self.max_size or w > self.max_size:
            raise ValueError(f"a latent of {h}×{w} patches is larger than this transformer's position table "
                             f"({self.max_size}×{self.max_size} patches, `pos_embed_max_size`): use a smaller size")
        top, left = (self.max_size - h) // 2, (self.max_size - w) // 2
        table = self.pos_embed.view(1, self.max_size, self.max_size, -1)[:, top:top + h, left:left + w]
        x = self.proj(latents).flatten(2).transpose(1, 2)  # (B, h·w, D)
        return (x + table.reshape(1, h * w, -1)).to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention without RoPE; with `qk_norm` a per-head RMSNorm (diffusers' arithmetic) on queries
    and keys. `added=True`: the text stream's own projections (`add_*_proj`, `norm_added_*`, and `to_add_out`
    unless `pre_only`), queries/keys/values concatenated [img, txt]. `added=False`: MMDiT-X's image-only attn2."""

    def __init__(self, dim: int, heads: int, head_dim: int, qk_norm: str | None, added: bool, pre_only: bool):
        super().__init__()
        self.head_dim = head_dim
        inner = heads * head_dim
        norm = (lambda: RMSNorm(head_dim, NORM_EPS)) if qk_norm else (lambda: None)
        self.norm_q, self.norm_k = norm(), norm()
        self.to_q, self.to_k, self.to_v = (Linear(dim, inner) for _ in range(3))
        self.to_out = nn.ModuleList([Linear(inner, dim)])  # `to_out.0`: diffusers' name
        if added:
            self.norm_added_q, self.norm_added_k = norm(), norm()
            self.add_q_proj, self.add_k_proj, self.add_v_proj = (Linear(dim, inner) for _ in range(3))
            self.to_add_out = None if pre_only else Linear(inner, dim)

    def _heads(self, x: torch.Tensor, projections, norms) -> tuple[torch.Tensor, ...]:
        q, k, v = (p(x).unflatten(-1, (-1, self.head_dim)) for p in projections)  # (B, S, heads, head_dim)
        q = norms[0](q) if norms[0] is not None else q
        k = norms[1](k) if norms[1] is not None else k
        return q, k, v

    def forward(self, img: torch.Tensor, txt: torch.Tensor | None = None):
        """img (B, S_img, D) [txt (B, S_txt, D)] → img out, or (img out, txt out | None) with `txt`."""
        q, k, v = self._heads(img, (self.to_q, self.to_k, self.to_v), (self.norm_q, self.norm_k))
        if txt is not None:
            tq, tk, tv = self._heads(txt, (self.add_q_proj, self.add_k_proj, self.add_v_proj),
                                     (self.norm_added_q, self.norm_added_k))
            q, k, v = torch.cat([q, tq], dim=1), torch.cat([k, tk], dim=1), torch.cat([v, tv], dim=1)
        out = attention(q, k, v, None).to(q.dtype)  # (B, S_img [+ S_txt], heads·head_dim)
        if txt is None:
            return self.to_out[0](out)
        img_out, txt_out = out[:, :img.shape[1]], out[:, img.shape[1]:]
        return self.to_out[0](img_out), (self.to_add_out(txt_out) if self.to_add_out is not None else None)


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=NORM_EPS)


class JointBlock(nn.Module):
    """MMDiT block. Image stream: adaLN-Zero (shift, scale, gate for attention and for the MLP; 3 more for attn2
    with dual attention); text stream the same, or for the last block (`pre_only`) only (scale, shift) before
    the joint attention and nothing after it."""

    def __init__(self, config: SD3TransformerConfig, index: int):
        super().__init__()
        dim = config.inner_dim
        self.pre_only = index == config.num_layers - 1
        self.dual = index in config.dual_attention_layers
        self.norm1 = AdaNorm(dim, 9 if self.dual else 6)
        self.norm1_context = FinalNorm(dim) if self.pre_only else AdaNorm(dim, 6)
        heads, head_dim = config.num_attention_heads, config.attention_head_dim
        self.attn = Attention(dim, heads, head_dim, config.qk_norm, added=True, pre_only=self.pre_only)
        self.attn2 = Attention(dim, heads, head_dim, config.qk_norm, added=False, pre_only=False) if self.dual \
            else None
        self.ff = FeedForward(dim)
        self.ff_context = None if self.pre_only else FeedForward(dim)

    def forward(self, img: torch.Tensor, txt: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """img (B, S_img, D), txt (B, S_txt, D), c (B, D) → (txt or None after the last block, img)."""
        mod = self.norm1(c)  # 6 or 9 × (B, 1, D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod[:6]
        normed = _layer_norm(img)
        if self.pre_only:
            txt_in = self.norm1_context(txt, c)
        else:
            c_shift_a, c_scale_a, c_gate_a, c_shift_m, c_scale_m, c_gate_m = self.norm1_context(c)
            txt_in = _layer_norm(txt) * (1 + c_scale_a) + c_shift_a
        img_attn, txt_attn = self.attn(normed * (1 + scale_a) + shift_a, txt_in)
        img = img + gate_a * img_attn
        if self.dual:
            shift_a2, scale_a2, gate_a2 = mod[6:]
            img = img + gate_a2 * self.attn2(normed * (1 + scale_a2) + shift_a2)
        img = img + gate_m * self.ff(_layer_norm(img) * (1 + scale_m) + shift_m)
        if self.pre_only:
            return None, img
        txt = txt + c_gate_a * txt_attn
        txt = txt + c_gate_m * self.ff_context(_layer_norm(txt) * (1 + c_scale_m) + c_shift_m)
        return txt, img


class SD3Transformer2DModel(Model):
    """Latents (B, in_channels, H, W), text states (B, S_txt, joint_attention_dim), pooled CLIP (B,
    pooled_projection_dim), timestep (B,) in [0, 1000] → velocity prediction (B, out_channels, H, W).
    `skip_layers`: indices of blocks left out of this call (skip-layer guidance). `control`: a ControlNet's residual
    per block (B, h·w, D) or None, added to the image stream after that block, the last one included (ComfyUI's
    MMDiT; models/sd3_controlnet.py `per_block`)."""

    def __init__(self, config: SD3TransformerConfig):
        super().__init__()
        self.config = config
        dim = config.inner_dim
        self.pos_embed = PatchEmbed(config)
        self.time_text_embed = TimeTextEmbedding(dim, config.pooled_projection_dim, guidance=False)
        self.context_embedder = Linear(config.joint_attention_dim, config.caption_projection_dim)
        self.transformer_blocks = nn.ModuleList(JointBlock(config, i) for i in range(config.num_layers))
        self.norm_out = FinalNorm(dim)
        self.proj_out = Linear(dim, config.patch_size ** 2 * config.out_channels)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, timestep: torch.Tensor,
                skip_layers: list[int] | tuple[int, ...] | None = None,
                control: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        B, _, H, W = hidden_states.shape
        p = self.config.patch_size
        img = self.pos_embed(hidden_states).contiguous()  # (B, h·w, D)
        c = self.time_text_embed(timestep, None, pooled_projections)  # (B, D)
        txt = self.context_embedder(encoder_hidden_states)  # (B, S_txt, D)
        skip = set(skip_layers or ())
        for index, block in enumerate(self.transformer_blocks):
            if index not in skip:
                txt, img = block(img, txt, c)
            if control is not None and index < len(control) and control[index] is not None:
                img = img + control[index]
        out = self.proj_out(self.norm_out(img, c))  # (B, h·w, p·p·C)
        out = out.reshape(B, H // p, W // p, p, p, self.config.out_channels)
        return out.permute(0, 5, 1, 3, 2, 4).reshape(B, self.config.out_channels, H, W)
