"""Building blocks of diffusion transformers (DiT, Peebles & Xie, 2023), shared by the flow-matching families.

Z-Image uses all of them now; Flux.1 and SD3.5 are meant to reuse them (their differences are noted where they
fall). Each block computes what diffusers 0.42.1's counterpart computes, operation by operation, so float32
results are bit-equal (tests/flow/test_z_image_transformer.py checks the whole model):
* `RMSNorm` (Zhang & Sennrich, 2019): diffusers' `normalization.RMSNorm` — also the per-head QK-norm;
* rotary position embeddings (Su et al., 2021) over several position axes: `rope_table` / `apply_rope_complex`
  are the complex, adjacent-pair form of Z-Image (and Lumina); `rope_cos_sin` / `apply_rope_real` the real
  cos/sin form of Flux.1 (checked against diffusers' in tests/flow/test_dit_blocks.py, ready for the next issue);
* `modulate` / `gate` helpers for adaLN modulation (DiT's adaptive layer norm);
* `patchify` / `unpatchify` in Z-Image's token layout (channels last in a patch; Flux packs channels first);
* `attention`: multi-head attention through `scaled_dot_product_attention`, with the optional key mask of a batch
  whose items have different lengths;
* the sinusoidal timestep embedding is `embeddings.timestep_embedding` (the UNets' one; the same arithmetic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight over the last axis, as diffusers' `RMSNorm` computes it: the mean of
    squares in float32, the product in the promoted dtype; with bf16/fp16 weights the normalised value is cast to
    the weight's dtype before the multiplication. `weight` None: no affine part, result in the input's dtype."""

    def __init__(self, dim: int, eps: float, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim) → (..., dim)
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)  # (..., 1) float32
        y = x * torch.rsqrt(variance + self.eps)  # promoted: float32 for a bf16 x
        if self.weight is None:
            return y.to(x.dtype)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            y = y.to(self.weight.dtype)
        return y * self.weight


# --- rotary position embeddings -------------------------------------------------------------------------------------

def rope_table(axis_dim: int, length: int, theta: float) -> torch.Tensor:
    """e^{i·p·ω_k} for positions p < `length` and ω_k = theta^(-2k/axis_dim): (length, axis_dim/2) complex64.

    Frequencies and angles in float64, rounded to float32 before the polar form (diffusers' Z-Image
    `RopeEmbedder.precompute_freqs_cis`; built on the CPU there too)."""
    freqs = 1.0 / (theta ** (torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim))  # (axis_dim/2,)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), freqs).float()  # (length, axis_dim/2)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


class MultiAxisRope:
    """Rotary factors for positions with several integer coordinates (Z-Image: (frame/caption, row, column)).

    Each axis has its own table (`axes_dims[i]` features, positions below `axes_lens[i]`); a token's factors are the
    per-axis rows concatenated: ids (N, n_axes) → (N, sum(axes_dims)/2) complex64. Not a module: the tables are
    derived, never saved (diffusers does not save them either), and are rebuilt per device on first use."""

    def __init__(self, theta: float, axes_dims: tuple[int, ...], axes_lens: tuple[int, ...]):
        self.theta, self.axes_dims, self.axes_lens = theta, tuple(axes_dims), tuple(axes_lens)
        self._tables: dict[torch.device, list[torch.Tensor]] = {}

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        tables = self._tables.get(ids.device)
        if tables is None:
            tables = [rope_table(d, n, self.theta).to(ids.device) for d, n in zip(self.axes_dims, self.axes_lens)]
            self._tables[ids.device] = tables
        return torch.cat([table[ids[:, i]] for i, table in enumerate(tables)], dim=-1)


def apply_rope_complex(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent feature pairs (x_{2k}, x_{2k+1}) as complex numbers: x (B, S, heads, d), freqs (B, S, d/2)
    complex64 → (B, S, heads, d) in x's dtype; computed in float32 (Z-Image's `apply_rotary_emb`)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (B, S, heads, d/2)
    return torch.view_as_real(pairs * freqs.unsqueeze(2)).flatten(3).type_as(x)


def rope_cos_sin(ids: torch.Tensor, axes_dims: tuple[int, ...], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The real form (Flux.1): ids (N, n_axes) → cos, sin (N, sum(axes_dims)) float32, each axis's angles
    p·theta^(-2k/d) in float64 (positions from float32), every value repeated for its pair (x_{2k}, x_{2k+1}), axes
    concatenated (diffusers' `FluxPosEmbed` with `get_1d_rotary_pos_embed(use_real=True)`)."""
    positions = ids.float()
    cos, sin = [], []
    for i, d in enumerate(axes_dims):
        freqs = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=ids.device) / d))  # (d/2,)
        angles = torch.outer(positions[:, i], freqs)  # (N, d/2) float64
        cos.append(angles.cos().repeat_interleave(2, dim=1).float())
        sin.append(angles.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


def apply_rope_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, S, heads, d), cos/sin (S, d) → x·cos + rotate_pairs(x)·sin in float32, back in x's dtype, where
    rotate_pairs maps (a, b) → (−b, a) on adjacent pairs (diffusers' `apply_rotary_emb`, use_real_unbind_dim -1)."""
    real, imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)  # (B, S, heads, d/2) each
    rotated = torch.stack([-imag, real], dim=-1).flatten(3)  # (B, S, heads, d)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


# --- adaLN modulation -----------------------------------------------------------------------------------------------

def modulation_chunks(mod: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """A modulation vector (B, n·D) → n tensors (B, 1, D), broadcast over the tokens."""
    return mod.unsqueeze(1).chunk(n, dim=2)


# --- attention ------------------------------------------------------------------------------------------------------

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """q, k, v (B, S, heads, d) → (B, S, heads·d); `key_mask` (B, S) bool, True where a key may be attended (None:
    every key). softmax(q·kᵀ/√d)·v through `scaled_dot_product_attention`, as diffusers' native backend calls it."""
    mask = key_mask[:, None, None, :] if key_mask is not None else None  # (B, 1, 1, S)
    q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # (B, heads, S, d)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, S, d)
    return out.permute(0, 2, 1, 3).flatten(2, 3)  # (B, S, heads·d)


def length_mask(lengths: list[int], device: torch.device) -> torch.Tensor | None:
    """(B, max length) bool, True on each item's first `lengths[i]` positions; None when all lengths are equal
    (no mask at all: the same SDPA kernel diffusers takes then)."""
    longest = max(lengths)
    if all(n == longest for n in lengths):
        return None
    return torch.arange(longest, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]


# --- patchify -------------------------------------------------------------------------------------------------------

def patchify(image: torch.Tensor, p: int, pf: int) -> torch.Tensor:
    """One latent (C, F, H, W) → tokens (F/pf · H/p · W/p, pf·p·p·C), ordered (f, h, w), features (pf, ph, pw, C):
    channels LAST within a patch (Z-Image's layout; Flux's packing puts channels first)."""
    C, Fr, H, W = image.shape
    x = image.view(C, Fr // pf, pf, H // p, p, W // p, p)
    return x.permute(1, 3, 5, 2, 4, 6, 0).reshape((Fr // pf) * (H // p) * (W // p), pf * p * p * C)


def unpatchify(tokens: torch.Tensor, size: tuple[int, int, int], p: int, pf: int, channels: int) -> torch.Tensor:
    """The inverse of `patchify`: the first F/pf·H/p·W/p tokens (N, pf·p·p·C) → (C, F, H, W)."""
    Fr, H, W = size
    n = (Fr // pf) * (H // p) * (W // p)
    x = tokens[:n].view(Fr // pf, H // p, W // p, pf, p, p, channels)
    return x.permute(6, 0, 3, 1, 4, 2, 5).reshape(channels, Fr, H, W)


def coordinate_grid(size: tuple[int, ...], start: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Integer coordinates of a grid, row-major: (prod(size), len(size)) int32, axis i from start[i]."""
    axes = [torch.arange(s0, s0 + n, dtype=torch.int32, device=device) for s0, n in zip(start, size)]
    return torch.stack(torch.meshgrid(axes, indexing="ij"), dim=-1).flatten(0, -2)


def pad_batch(items: list[torch.Tensor]) -> torch.Tensor:
    """Variable-length items (L_i, ...) → (B, max L_i, ...), zero-filled after each item's end."""
    return nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=0.0)
