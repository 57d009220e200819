"""Attention layers, all through `F.scaled_dot_product_attention`.

`SpatialSelfAttention` is the single-block self-attention of UNet2DModel and the VAE mid block (diffusers'
`Attention` built with `_from_deprecated_attn_block`); `Transformer2D` is Stable Diffusion's spatial transformer
(diffusers' `Transformer2DModel` with continuous input). Attribute names match diffusers' state-dict keys.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Conv2d, GroupNorm, LayerNorm, Linear


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """q (B, N, heads·d), k/v (B, M, heads·d) → (B, N, heads·d); softmax(q·kᵀ/√d)·v per head."""
    B, N, inner = q.shape
    d = inner // heads
    q, k, v = (x.view(B, -1, heads, d).transpose(1, 2) for x in (q, k, v))  # (B, heads, N|M, d)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
    return out.transpose(1, 2).reshape(B, N, heads * d)


class SpatialSelfAttention(nn.Module):
    """GroupNorm → self-attention over the H·W positions → + input, divided by `rescale_output_factor`."""

    def __init__(self, channels: int, head_dim: int, groups: int, eps: float, rescale_output_factor: float = 1.0):
        super().__init__()
        self.heads = channels // head_dim
        inner = self.heads * head_dim
        self.group_norm = GroupNorm(groups, channels, eps=eps)
        self.to_q = Linear(channels, inner)
        self.to_k = Linear(channels, inner)
        self.to_v = Linear(channels, inner)
        self.to_out = nn.ModuleList([Linear(inner, channels)])  # `to_out.0`: diffusers' name
        self.rescale_output_factor = rescale_output_factor

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        # normalised as (B, C, HW), as diffusers' AttnProcessor2_0 does: on a channels-last `x` (which oneDNN's
        # bf16 convolutions can return) the 4-D norm keeps that layout, and the projections below then round
        # differently in bf16 (up to 12/255 in an img2img image)
        h = self.group_norm(x.view(B, C, H * W)).transpose(1, 2)  # (B, HW, C)
        h = multi_head_attention(self.to_q(h), self.to_k(h), self.to_v(h), self.heads)
        h = self.to_out[0](h).transpose(1, 2).reshape(B, C, H, W)
        out = h + x
        return out if self.rescale_output_factor == 1.0 else out / self.rescale_output_factor  # x / 1.0 is x


class Attention(nn.Module):
    """Multi-head attention of the transformer blocks: self-attention, or cross-attention on `context`."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.to_q = Linear(dim, inner, bias=False)
        self.to_k = Linear(context_dim or dim, inner, bias=False)
        self.to_v = Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.ModuleList([Linear(inner, dim)])  # `to_out.0`: diffusers' name
        self.dropout = dropout

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            k, v = self.to_k(x), self.to_v(x)  # (B, HW, inner)
        else:
            k, v = self._context_keys_values(context)  # (B, M, inner)
        h = multi_head_attention(self.to_q(x), k, v, self.heads)
        out = self.to_out[0](h)
        return F.dropout(out, self.dropout, True) if self.training and self.dropout else out  # identity at inference

    def _context_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """to_k(context), to_v(context). The text context is the same tensor at every denoising step, so without
        autograd they are computed once and reused for as long as the very same context object, unmodified, meets
        the very same, unmodified weights: the same operation on the same inputs, so the same bits (issue 20)."""
        if (torch.is_grad_enabled() or context.is_inference() or not _plain_linear(self.to_k, self.to_v)
                or torch.jit.is_tracing()):
            # inference tensors keep no version counter; a wrapped layer (unfused LoRA) has more than a weight; a
            # trace (models/warm_trace.py) must record the projections, not freeze this call's k and v
            return self.to_k(context), self.to_v(context)
        key = (context._version, self.to_k.weight, self.to_k.weight._version, self.to_v.weight,
               self.to_v.weight._version)
        cached = self.__dict__.get("_context_cache")  # (weakref to the context, key, k, v)
        if cached is not None and cached[0]() is context and _same_key(cached[1], key):
            return cached[2], cached[3]
        k, v = self.to_k(context), self.to_v(context)
        self.__dict__["_context_cache"] = (weakref.ref(context), key, k, v)  # one assignment: safe across threads
        return k, v


def _plain_linear(*layers: nn.Module) -> bool:
    """Layers whose output depends on their weight (and a bias that is never edited) alone."""
    return all(isinstance(layer, nn.Linear) for layer in layers)


def _same_key(a: tuple, b: tuple) -> bool:
    return all(x is y if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b, strict=True))


class GEGLU(nn.Module):
    """Gated GELU (Shazeer, 2020): one projection to 2×inner, the second half gates the first."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float = 0.0, mult: int = 4):
        super().__init__()
        # `net.0`, `net.2`: the key names of diffusers' Sequential-like ModuleList
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(dropout), Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            if type(layer) is nn.Dropout and not (self.training and layer.p):
                continue  # the identity: one module call less per block (the list keeps diffusers' `net.2` key)
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm block: self-attention, cross-attention on the text, GEGLU feed-forward, each residual.

    With `only_cross_attention` the first attention reads the text too (diffusers' option of that name).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, only_cross_attention: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.only_cross_attention = only_cross_attention
        self.norm1 = LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, context_dim if only_cross_attention else None, dropout)
        self.norm2 = LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim, dropout)
        self.norm3 = LayerNorm(dim)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x), context if self.only_cross_attention else None) + x  # (B, HW, dim)
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    """GroupNorm → proj_in → transformer blocks over the H·W positions → proj_out → + input.

    The projections are 1×1 convs (SD1) or Linear layers (SD2, `use_linear_projection`); both act per pixel,
    the difference is only where the (B, C, H, W) ↔ (B, HW, C) reshape happens, which the key shapes record.
    """

    def __init__(self, channels: int, heads: int, context_dim: int, groups: int, num_layers: int = 1,
                 use_linear_projection: bool = False, only_cross_attention: bool = False, dropout: float = 0.0):
        super().__init__()
        head_dim = channels // heads
        inner = heads * head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = GroupNorm(groups, channels, eps=1e-6)
        if use_linear_projection:
            self.proj_in, self.proj_out = Linear(channels, inner), Linear(inner, channels)
        else:
            self.proj_in, self.proj_out = Conv2d(channels, inner, 1), Conv2d(inner, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, head_dim, context_dim, only_cross_attention, dropout)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        if not self.use_linear_projection:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(B, H * W, -1)  # (B, HW, inner)
        if self.use_linear_projection:
            h = _linear_on_transposed(self.proj_in, h)
        for block in self.transformer_blocks:
            h = block(h, context)
        if self.use_linear_projection:
            h = self.proj_out(h)
        # contiguous (NCHW) whatever `x` is, as diffusers' Transformer2DModel does: img2img latents come channels-last
        # from the VAE encoder, and a channels-last proj_out rounds differently in bf16 (13/255 in an img2img image)
        h = h.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()  # (B, C|inner, H, W)
        if not self.use_linear_projection:
            h = self.proj_out(h)
        return h + x


def _linear_on_transposed(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` computed the way torch computes it for diffusers' module, whose weight requires grad (ours, loaded
    for inference, does not). For x (B, N, C) that is a transposed view of a contiguous (B, C, N), torch picks its
    bf16 matmul by that flag and by the CPU: on an AMD EPYC it multiplies the transposed problem (W · xᵀ)ᵀ, on an
    Intel Xeon with AMX it runs oneDNN on x as it is. The orders round differently (up to 22/255 per pixel of an
    SDXL image in bf16), so the call is made with a weight that requires grad, as diffusers' is, and torch picks the
    same kernel on every CPU. No graph is recorded: models run under torch.no_grad()."""
    if x.dim() != 3 or x.is_contiguous() or not x.transpose(1, 2).is_contiguous() or torch.is_grad_enabled():
        return layer(x)
    return torch.nn.functional.linear(x, layer.weight.detach().requires_grad_(), layer.bias)
