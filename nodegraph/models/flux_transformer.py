"""Flux.1's rectified-flow transformer (Black Forest Labs, 2024; the MMDiT double-stream blocks of Esser et al.,
2024, "Scaling rectified flow transformers", followed by parallel attention + MLP single-stream blocks), as
diffusers 0.42.1's `FluxTransformer2DModel` computes it.

Same parameter names and shapes as diffusers (a diffusers folder loads strictly; tests/flow checks the real-size
FLUX.1-dev and -schnell key sets on the meta device) and the same operations in the same order, so float32 and
bf16 outputs equal diffusers' (tests/flow/test_flux_transformer.py).

    c   = timestep MLP(sinusoids(1000·t)) [+ guidance MLP(sinusoids(1000·g))] + pooled-text MLP     (B, D)
    img = x_embedder(packed latents)   txt = context_embedder(T5 states)
    double-stream blocks: separate weights per stream, one joint attention over [txt, img] with RoPE
    single-stream blocks: one sequence [txt, img], attention and MLP side by side
    out = proj_out(LayerNorm(img)·(1 + scale) + shift)     (scale, shift) = Linear(SiLU(c)), diffusers' order

RoPE positions come from the caller (`txt_ids`, `img_ids`: 3 axes each) in the real cos/sin form
(`dit_blocks.rope_cos_sin`), theta 10000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Linear, Model
from nodegraph.models.dit_blocks import apply_rope_real, attention, modulation_chunks, rope_cos_sin
from nodegraph.models.embeddings import TimestepEmbedding, timestep_embedding

ROPE_THETA = 10000.0  # fixed in diffusers' FluxPosEmbed (not a config key)
T_FREQUENCIES = 256  # sinusoidal features of the timestep and of the guidance
NORM_EPS = 1e-6  # every LayerNorm and QK RMSNorm of the model


@dataclass(frozen=True)
class FluxTransformerConfig:
    """diffusers' `FluxTransformer2DModel` config.json; defaults are its class defaults (= FLUX.1-schnell)."""

    patch_size: int = 1  # the pipeline packs 2×2 patches itself; proj_out emits patch_size² · out_channels
    in_channels: int = 64  # packed latent features: 16 VAE channels × 2 × 2
    out_channels: int | None = None  # None: as many as in_channels
    num_layers: int = 19  # double-stream (MMDiT) blocks
    num_single_layers: int = 38  # single-stream blocks
    attention_head_dim: int = 128  # per-head width; must equal sum(axes_dims_rope)
    num_attention_heads: int = 24  # heads; the token width is heads · head_dim (3072 for FLUX.1)
    joint_attention_dim: int = 4096  # text-state width: T5-XXL's hidden size
    pooled_projection_dim: int = 768  # pooled text width: CLIP-L's
    guidance_embeds: bool = False  # dev (guidance-distilled) has a guidance embedder; schnell has none
    axes_dims_rope: tuple[int, ...] = (16, 56, 56)  # RoPE features per position axis (unused, row, column)

    _CLASS: ClassVar[str] = "FluxTransformer2DModel"
    _CHOICES: ClassVar[dict[str, tuple]] = {}
    _ONLY: ClassVar[dict[str, tuple]] = {}

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def check(self, fail) -> None:
        """Values that cannot build a model; `fail(key, value, allowed)` makes the error."""
        if sum(self.axes_dims_rope) != self.attention_head_dim or any(d % 2 for d in self.axes_dims_rope):
            raise fail("axes_dims_rope", self.axes_dims_rope,
                       f"even dims summing to attention_head_dim = {self.attention_head_dim}")
        for key in ("in_channels", "num_attention_heads", "attention_head_dim", "patch_size"):
            if getattr(self, key) <= 0:
                raise fail(key, getattr(self, key), "a positive integer")


def _modulated(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine (eps 1e-6), then · (1 + scale) + shift: x (B, S, D), shift/scale (B, 1, D)."""
    return F.layer_norm(x, (x.shape[-1],), eps=NORM_EPS) * (1 + scale) + shift


class AdaNorm(nn.Module):
    """`linear` of SiLU(c) → n modulation vectors (B, 1, D); diffusers' AdaLayerNormZero(-Single) parameters."""

    def __init__(self, dim: int, n: int):
        super().__init__()
        self.n = n
        self.linear = Linear(dim, n * dim)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (B, D) → n × (B, 1, D)
        return modulation_chunks(self.linear(F.silu(c)), self.n)


class FeedForward(nn.Module):
    """Linear → GELU (tanh approximation) → Linear, hidden 4·dim; keys `net.0.proj`, `net.2` as diffusers'."""

    class _Proj(nn.Module):
        def __init__(self, dim: int, hidden: int):
            super().__init__()
            self.proj = Linear(dim, hidden)

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.ModuleList([self._Proj(dim, 4 * dim), nn.Identity(), Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, dim) → (B, S, dim)
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class JointAttention(nn.Module):
    """Multi-head attention with per-head RMS QK-norm (torch's RMSNorm, eps 1e-6) and real RoPE.

    Double-stream (`added=True`): the text stream has its own projections (`add_*_proj`, `norm_added_*`,
    `to_add_out`); queries/keys/values are concatenated [txt, img] and attend jointly. Single-stream
    (`added=False`): one sequence, no output projection here (the block's `proj_out` does it)."""

    def __init__(self, dim: int, heads: int, head_dim: int, added: bool):
        super().__init__()
        self.head_dim = head_dim
        self.norm_q, self.norm_k = nn.RMSNorm(head_dim, eps=NORM_EPS), nn.RMSNorm(head_dim, eps=NORM_EPS)
        self.to_q, self.to_k, self.to_v = (Linear(dim, heads * head_dim) for _ in range(3))
        if added:
            self.to_out = nn.ModuleList([Linear(heads * head_dim, dim)])  # `to_out.0`: diffusers' name
            self.norm_added_q = nn.RMSNorm(head_dim, eps=NORM_EPS)
            self.norm_added_k = nn.RMSNorm(head_dim, eps=NORM_EPS)
            self.add_q_proj, self.add_k_proj, self.add_v_proj = (Linear(dim, heads * head_dim) for _ in range(3))
            self.to_add_out = Linear(heads * head_dim, dim)

    def _heads(self, x: torch.Tensor, projections, norms) -> tuple[torch.Tensor, ...]:
        q, k, v = (p(x).unflatten(-1, (-1, self.head_dim)) for p in projections)  # (B, S, heads, head_dim)
        return norms[0](q), norms[1](k), v

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                context: torch.Tensor | None = None):
        """x (B, S_img, D) [context (B, S_txt, D)] → (B, S, heads·head_dim), or (img_out, txt_out) with context."""
        q, k, v = self._heads(x, (self.to_q, self.to_k, self.to_v), (self.norm_q, self.norm_k))
        if context is not None:
            cq, ck, cv = self._heads(context, (self.add_q_proj, self.add_k_proj, self.add_v_proj),
                                     (self.norm_added_q, self.norm_added_k))
            q, k, v = torch.cat([cq, q], dim=1), torch.cat([ck, k], dim=1), torch.cat([cv, v], dim=1)
        q, k = apply_rope_real(q, *rope), apply_rope_real(k, *rope)  # (B, S_txt + S_img, heads, head_dim)
        out = attention(q, k, v, None).to(q.dtype)  # (B, S, heads·head_dim)
        if context is None:
            return out
        txt, img = out.split_with_sizes([context.shape[1], x.shape[1]], dim=1)
        return self.to_out[0](img.contiguous()), self.to_add_out(txt.contiguous())


class DoubleStreamBlock(nn.Module):
    """MMDiT block: per stream adaLN-Zero (shift, scale, gate for attention and for the MLP), joint attention."""

    def __init__(self, config: FluxTransformerConfig):
        super().__init__()
        dim = config.inner_dim
        self.norm1, self.norm1_context = AdaNorm(dim, 6), AdaNorm(dim, 6)
        self.attn = JointAttention(dim, config.num_attention_heads, config.attention_head_dim, added=True)
        self.ff, self.ff_context = FeedForward(dim), FeedForward(dim)

    def forward(self, img: torch.Tensor, txt: torch.Tensor, c: torch.Tensor, rope) -> tuple[torch.Tensor, ...]:
        """img (B, S_img, D), txt (B, S_txt, D), c (B, D) → (txt, img), same shapes."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.norm1(c)  # each (B, 1, D)
        c_shift_a, c_scale_a, c_gate_a, c_shift_m, c_scale_m, c_gate_m = self.norm1_context(c)
        img_attn, txt_attn = self.attn(_modulated(img, shift_a, scale_a), rope, _modulated(txt, c_shift_a, c_scale_a))
        img = img + gate_a * img_attn
        img = img + gate_m * self.ff(_modulated(img, shift_m, scale_m))
        txt = txt + c_gate_a * txt_attn
        txt = txt + c_gate_m * self.ff_context(_modulated(txt, c_shift_m, c_scale_m))
        if txt.dtype == torch.float16:  # diffusers clips the text stream in fp16 only
            txt = txt.clip(-65504, 65504)
        return txt, img


class SingleStreamBlock(nn.Module):
    """Parallel block: h += gate · proj_out([attn(m), GELU(proj_mlp(m))]), m = LayerNorm(h)·(1 + scale) + shift."""

    def __init__(self, config: FluxTransformerConfig, mlp_ratio: float = 4.0):
        super().__init__()
        dim = config.inner_dim
        hidden = int(dim * mlp_ratio)
        self.norm = AdaNorm(dim, 3)
        self.proj_mlp = Linear(dim, hidden)
        self.proj_out = Linear(dim + hidden, dim)
        self.attn = JointAttention(dim, config.num_attention_heads, config.attention_head_dim, added=False)

    def forward(self, h: torch.Tensor, c: torch.Tensor, rope) -> torch.Tensor:  # h (B, S_txt + S_img, D)
        shift, scale, gate = self.norm(c)  # each (B, 1, D)
        m = _modulated(h, shift, scale)
        mlp = F.gelu(self.proj_mlp(m), approximate="tanh")  # (B, S, hidden)
        h = h + gate * self.proj_out(torch.cat([self.attn(m, rope), mlp], dim=2))
        return h.clip(-65504, 65504) if h.dtype == torch.float16 else h


class TimeTextEmbedding(nn.Module):
    """c = MLP_t(sinusoids(t)) [+ MLP_g(sinusoids(g))] + MLP_text(pooled), keys as diffusers'
    CombinedTimestep(Guidance)TextProjEmbeddings: `timestep_embedder`, `guidance_embedder`, `text_embedder`."""

    def __init__(self, dim: int, pooled_dim: int, guidance: bool):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(T_FREQUENCIES, dim)
        self.guidance_embedder = TimestepEmbedding(T_FREQUENCIES, dim) if guidance else None
        self.text_embedder = nn.Module()
        self.text_embedder.linear_1, self.text_embedder.linear_2 = Linear(pooled_dim, dim), Linear(dim, dim)

    @staticmethod
    def _sinusoids(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:  # (B,) → (B, 256) in `dtype`
        return timestep_embedding(t, T_FREQUENCIES, flip_sin_to_cos=True, freq_shift=0).to(dtype)

    def forward(self, t: torch.Tensor, guidance: torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor:
        emb = self.timestep_embedder(self._sinusoids(t, pooled.dtype))  # (B, D)
        if self.guidance_embedder is not None:
            emb = emb + self.guidance_embedder(self._sinusoids(guidance, pooled.dtype))
        text = self.text_embedder.linear_2(F.silu(self.text_embedder.linear_1(pooled)))  # (B, D)
        return emb + text


class FinalNorm(nn.Module):
    """AdaLayerNormContinuous: `linear` of SiLU(c) → (scale, shift) in that order (BFL's file stores shift
    first), LayerNorm(x)·(1 + scale) + shift."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # x (B, S, D), c (B, D)
        scale, shift = modulation_chunks(self.linear(F.silu(c).to(x.dtype)), 2)  # each (B, 1, D)
        return _modulated(x, shift, scale)


class FluxTransformer2DModel(Model):
    """Packed latents (B, S_img, in_channels), T5 states (B, S_txt, joint_attention_dim), pooled CLIP (B,
    pooled_projection_dim), timestep (B,) = sigma (t/1000), position ids (S_txt, 3) and (S_img, 3), guidance (B,)
    for dev → velocity prediction (B, S_img, patch_size² · out_channels)."""

    def __init__(self, config: FluxTransformerConfig):
        super().__init__()
        self.config = config
        dim = config.inner_dim
        self.time_text_embed = TimeTextEmbedding(dim, config.pooled_projection_dim, config.guidance_embeds)
        self.context_embedder = Linear(config.joint_attention_dim, dim)
        self.x_embedder = Linear(config.in_channels, dim)
        self.transformer_blocks = nn.ModuleList(DoubleStreamBlock(config) for _ in range(config.num_layers))
        self.single_transformer_blocks = nn.ModuleList(SingleStreamBlock(config)
                                                       for _ in range(config.num_single_layers))
        self.norm_out = FinalNorm(dim)
        out_channels = config.out_channels or config.in_channels
        self.proj_out = Linear(dim, config.patch_size ** 2 * out_channels)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, timestep: torch.Tensor, img_ids: torch.Tensor,
                txt_ids: torch.Tensor, guidance: torch.Tensor | None = None) -> torch.Tensor:
        img = self.x_embedder(hidden_states)  # (B, S_img, D)
        # diffusers casts t/1000 (and g) to the hidden dtype BEFORE ×1000: in bf16 the timestep is quantized
        timestep = timestep.to(img.dtype) * 1000
        if self.config.guidance_embeds:
            if guidance is None:
                raise ValueError("this Flux transformer has a guidance embedding (FLUX.1-dev): pass `guidance`")
            guidance = guidance.to(img.dtype) * 1000
        c = self.time_text_embed(timestep, guidance, pooled_projections)  # (B, D)
        txt = self.context_embedder(encoder_hidden_states)  # (B, S_txt, D)
        txt_ids, img_ids = (ids[0] if ids.ndim == 3 else ids for ids in (txt_ids, img_ids))  # batch-free ids
        rope = rope_cos_sin(torch.cat([txt_ids, img_ids]), self.config.axes_dims_rope, ROPE_THETA)  # (S, head_dim)
        for block in self.transformer_blocks:
            txt, img = block(img, txt, c, rope)
        h = torch.cat([txt, img], dim=1)  # (B, S_txt + S_img, D)
        for block in self.single_transformer_blocks:
            h = block(h, c, rope)
        img = h[:, txt.shape[1]:]  # (B, S_img, D)
        return self.proj_out(self.norm_out(img, c))  # (B, S_img, patch_size² · out_channels)
