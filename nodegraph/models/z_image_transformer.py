"""Z-Image's single-stream diffusion transformer (Z-Image Team, 2025, "Z-Image: an efficient image generation
foundation model with single-stream diffusion transformer"), as diffusers 0.42.1's `ZImageTransformer2DModel`
computes it (text-to-image mode; the Omni mode with SigLIP features is not supported).

Same parameter names and shapes as diffusers (a diffusers folder loads strictly; tests/flow checks the real-size
key set on the meta device) and the same operations in the same order, so float32 outputs are bit-equal.

    tokens  = patchify(latent)                       per image, padded to a multiple of 32 with `x_pad_token`
    caption = RMSNorm → Linear (cap_embedder)        per prompt, padded to a multiple of 32 with `cap_pad_token`
    image tokens  → noise_refiner   (blocks with adaLN on the timestep)
    caption       → context_refiner (blocks without modulation)
    [image, caption] per item → layers (adaLN blocks) → final layer → unpatchify

Pad slots are not masked: they are learned tokens that take part in attention. A key mask exists only across
a batch whose items have different padded lengths. RoPE positions (3 axes): caption slot j → (1 + j, 0, 0),
image token (h, w) → (caption padded length + 1, h, w), image pad slot → (0, 0, 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Linear, Model
from nodegraph.models.dit_blocks import (MultiAxisRope, RMSNorm, apply_rope_complex, attention, coordinate_grid,
                                         length_mask, modulation_chunks, pad_batch, patchify, unpatchify)
from nodegraph.models.embeddings import timestep_embedding

ADALN_DIM = 256  # width of the timestep embedding every adaLN layer reads: min(dim, 256)
SEQ_MULTIPLE = 32  # image and caption token counts are padded to multiples of this
T_FREQUENCIES = 256  # sinusoidal features of the timestep
T_HIDDEN = 1024  # hidden width of the timestep MLP


@dataclass(frozen=True)
class ZImageTransformerConfig:
    """diffusers' `ZImageTransformer2DModel` config.json; defaults are its class defaults (= Z-Image-Turbo)."""

    all_patch_size: tuple[int, ...] = (2,)  # spatial patch sizes; one x-embedder / final layer per (p, pf) pair
    all_f_patch_size: tuple[int, ...] = (1,)  # frame patch sizes (images have one frame)
    in_channels: int = 16  # latent channels (the Flux VAE's); the output has as many
    dim: int = 3840  # token width
    n_layers: int = 30  # main (joint image + caption) blocks
    n_refiner_layers: int = 2  # blocks in each of noise_refiner (image only) and context_refiner (caption only)
    n_heads: int = 30  # attention heads; head_dim = dim / n_heads must equal sum(axes_dims)
    n_kv_heads: int = 30  # read by the original code only: diffusers builds full multi-head attention, as we do
    norm_eps: float = 1e-5  # RMSNorm eps of the blocks and of the caption embedder (QK-norm uses 1e-5 always)
    qk_norm: bool = True  # RMSNorm on each head's queries and keys
    cap_feat_dim: int = 2560  # caption feature width: the Qwen3 text encoder's hidden size
    siglip_feat_dim: int | None = None  # Z-Image Omni only (not supported)
    rope_theta: float = 256.0  # RoPE base
    t_scale: float = 1000.0  # the timestep (1 - sigma, in [0, 1]) is multiplied by this before the sinusoids
    axes_dims: tuple[int, ...] = (32, 48, 48)  # RoPE features per position axis (frame/caption, row, column)
    axes_lens: tuple[int, ...] = (1024, 512, 512)  # positions per axis (caption tokens + 1 must fit the first)

    _CLASS: ClassVar[str] = "ZImageTransformer2DModel"
    _CHOICES: ClassVar[dict[str, tuple]] = {}
    _ONLY: ClassVar[dict[str, tuple]] = {"siglip_feat_dim": (None,)}

    def check(self, fail) -> None:
        """Values that cannot build a model; `fail(key, value, allowed)` makes the error."""
        if len(self.all_patch_size) != len(self.all_f_patch_size) or not self.all_patch_size:
            raise fail("all_f_patch_size", self.all_f_patch_size, "one entry per `all_patch_size` entry")
        if self.dim % self.n_heads or self.dim // self.n_heads != sum(self.axes_dims):
            raise fail("axes_dims", self.axes_dims, f"dims summing to dim / n_heads = {self.dim / self.n_heads}")
        if len(self.axes_dims) != len(self.axes_lens) or any(d % 2 for d in self.axes_dims):
            raise fail("axes_lens", self.axes_lens, "one length per (even) `axes_dims` entry")


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) · w3 x) (Shazeer, 2020), no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1, self.w2, self.w3 = Linear(dim, hidden, bias=False), Linear(hidden, dim, bias=False), \
            Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, dim) → (B, S, dim)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with per-head RMS QK-norm and complex RoPE; names as diffusers' `Attention`."""

    def __init__(self, dim: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads, head_dim = heads, dim // heads
        self.to_q, self.to_k, self.to_v = (Linear(dim, dim, bias=False) for _ in range(3))
        self.to_out = nn.ModuleList([Linear(dim, dim, bias=False)])  # `to_out.0`: diffusers' name
        self.norm_q = RMSNorm(head_dim, eps=1e-5) if qk_norm else None
        self.norm_k = RMSNorm(head_dim, eps=1e-5) if qk_norm else None

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, freqs: torch.Tensor) -> torch.Tensor:
        q, k, v = (proj(x).unflatten(-1, (self.heads, -1)) for proj in (self.to_q, self.to_k, self.to_v))
        if self.norm_q is not None:  # (B, S, heads, head_dim)
            q, k = self.norm_q(q), self.norm_k(k)
        q, k = apply_rope_complex(q, freqs), apply_rope_complex(k, freqs)
        return self.to_out[0](attention(q, k, v, key_mask).to(q.dtype))  # (B, S, dim)


class ZImageBlock(nn.Module):
    """Pre- and post-normed (sandwich) block. With modulation (adaLN on the timestep embedding c):
    x += tanh(g_a) · norm2(attn(norm1(x) · (1 + s_a))), then the same for the FFN with (s_m, g_m)."""

    def __init__(self, config: ZImageTransformerConfig, modulation: bool):
        super().__init__()
        dim, eps = config.dim, config.norm_eps
        self.attention = SelfAttention(dim, config.n_heads, config.qk_norm)
        self.feed_forward = FeedForward(dim, int(dim / 3 * 8))
        self.attention_norm1, self.attention_norm2 = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.ffn_norm1, self.ffn_norm2 = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.modulation = modulation
        if modulation:  # no SiLU before this Linear (unlike the final layer's)
            self.adaLN_modulation = nn.Sequential(Linear(min(dim, ADALN_DIM), 4 * dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, freqs: torch.Tensor,
                c: torch.Tensor | None = None) -> torch.Tensor:  # x (B, S, dim), c (B, 256)
        if not self.modulation:
            x = x + self.attention_norm2(self.attention(self.attention_norm1(x), key_mask, freqs))
            return x + self.ffn_norm2(self.feed_forward(self.ffn_norm1(x)))
        scale_a, gate_a, scale_m, gate_m = modulation_chunks(self.adaLN_modulation(c), 4)  # each (B, 1, dim)
        gate_a, gate_m = gate_a.tanh(), gate_m.tanh()
        scale_a, scale_m = 1.0 + scale_a, 1.0 + scale_m
        x = x + gate_a * self.attention_norm2(self.attention(self.attention_norm1(x) * scale_a, key_mask, freqs))
        return x + gate_m * self.ffn_norm2(self.feed_forward(self.ffn_norm1(x) * scale_m))


class FinalLayer(nn.Module):
    """LayerNorm (no affine, eps 1e-6) · (1 + Linear(SiLU(c))) → Linear to patch features."""

    def __init__(self, dim: int, out_features: int):
        super().__init__()
        self.linear = Linear(dim, out_features)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), Linear(min(dim, ADALN_DIM), dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # (B, S, dim), (B, 256) → (B, S, out)
        scale = 1.0 + self.adaLN_modulation(c)  # (B, dim)
        return self.linear(F.layer_norm(x, (x.shape[-1],), eps=1e-6) * scale.unsqueeze(1))


class TimestepEmbedder(nn.Module):
    """Sinusoids (256, [cos, sin], float32) → Linear → SiLU → Linear: t (B,) → (B, min(dim, 256))."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(Linear(T_FREQUENCIES, T_HIDDEN), nn.SiLU(), Linear(T_HIDDEN, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = timestep_embedding(t, T_FREQUENCIES, flip_sin_to_cos=True, freq_shift=0)  # (B, 256) float32
        # the compute dtype: the bias's, which float8 weight storage (models/fp8.py) leaves in it
        return self.mlp(features.to(self.mlp[0].bias.dtype))


@dataclass
class _Sequence:
    """Padded per-item token rows before embedding, with their RoPE positions and pad-slot flags."""

    rows: list[torch.Tensor]  # (L_i padded, features)
    ids: list[torch.Tensor]  # (L_i padded, 3) int32
    pad: list[torch.Tensor]  # (L_i padded,) bool: True on pad slots


def _pad_to_multiple(rows: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad (L, F) rows to a multiple of 32 by repeating the last row (replaced by the pad token after
    embedding); pad slots get position (0, 0, 0) unless `ids` already covers them."""
    n, extra = len(rows), (-len(rows)) % SEQ_MULTIPLE
    rows = torch.cat([rows, rows[-1:].repeat(extra, 1)]) if extra else rows
    if len(ids) < n + extra:
        ids = torch.cat([ids, torch.zeros(n + extra - len(ids), 3, dtype=torch.int32, device=ids.device)])
    pad = torch.arange(n + extra, device=rows.device) >= n
    return rows, ids, pad


class ZImageTransformer2DModel(Model):
    """Latents [(C, 1, H, W)], timesteps (B,) in [0, 1] (1 - sigma), captions [(L_i, cap_feat_dim)] →
    predictions [(C, 1, H, W)] (the pipeline negates them into the flow velocity)."""

    def __init__(self, config: ZImageTransformerConfig):
        super().__init__()
        self.config = config
        dim, pairs = config.dim, list(zip(config.all_patch_size, config.all_f_patch_size))
        self.all_x_embedder = nn.ModuleDict({f"{p}-{pf}": Linear(pf * p * p * config.in_channels, dim)
                                             for p, pf in pairs})
        self.all_final_layer = nn.ModuleDict({f"{p}-{pf}": FinalLayer(dim, p * p * pf * config.in_channels)
                                              for p, pf in pairs})
        self.noise_refiner = nn.ModuleList(ZImageBlock(config, True) for _ in range(config.n_refiner_layers))
        self.context_refiner = nn.ModuleList(ZImageBlock(config, False) for _ in range(config.n_refiner_layers))
        self.t_embedder = TimestepEmbedder(min(dim, ADALN_DIM))
        self.cap_embedder = nn.Sequential(RMSNorm(config.cap_feat_dim, config.norm_eps),
                                          Linear(config.cap_feat_dim, dim))
        self.x_pad_token = nn.Parameter(torch.zeros((1, dim)))
        self.cap_pad_token = nn.Parameter(torch.zeros((1, dim)))
        self.layers = nn.ModuleList(ZImageBlock(config, True) for _ in range(config.n_layers))
        self.rope = MultiAxisRope(config.rope_theta, config.axes_dims, config.axes_lens)

    # Partial residency (models/partial_residency.py, the default CPU run): this share of the blocks keeps its
    # weights in the file, read at each call: a third holds 4.1 GB fewer of the real model's 12.3 GB (peak RSS
    # 0.66x -> 0.49x the pipeline's at the reduced size) for one more copy of those bytes per step.
    FILE_READ_SHARE: ClassVar[float] = 1 / 3

    def file_read_blocks(self, share: float | None = None) -> list[str]:
        """The blocks partial residency reads from the file: `share` (default FILE_READ_SHARE) of them, spread."""
        from nodegraph.models.partial_residency import file_blocks

        names = [f"{group}.{k}" for group in ("noise_refiner", "context_refiner", "layers")
                 for k in range(len(getattr(self, group)))]
        return file_blocks(names, self.FILE_READ_SHARE if share is None else share)

    def forward(self, x: list[torch.Tensor], t: torch.Tensor, cap_feats: list[torch.Tensor],
                patch_size: int = 2, f_patch_size: int = 1) -> list[torch.Tensor]:
        key = f"{patch_size}-{f_patch_size}"
        if key not in self.all_x_embedder:
            raise ValueError(f"patch size {patch_size} / frame patch {f_patch_size} is not one of this model's "
                             f"({', '.join(self.all_x_embedder)})")
        if len(x) != len(cap_feats):
            raise ValueError(f"{len(x)} latents but {len(cap_feats)} captions: pass one caption per latent")
        c = self.t_embedder(t * self.config.t_scale).type_as(x[0])  # (B, 256)
        images, captions, sizes = self._tokenize(x, cap_feats, patch_size, f_patch_size)

        img, img_freqs, img_mask, img_lens = self._embed(images, self.all_x_embedder[key], self.x_pad_token)
        for block in self.noise_refiner:
            img = block(img, img_mask, img_freqs, c)  # (B, S_img, dim)
        cap, cap_freqs, cap_mask, cap_lens = self._embed(captions, self.cap_embedder, self.cap_pad_token)
        for block in self.context_refiner:
            cap = block(cap, cap_mask, cap_freqs)  # (B, S_cap, dim)

        joint = [torch.cat([img[i, :a], cap[i, :b]]) for i, (a, b) in enumerate(zip(img_lens, cap_lens))]
        joint_freqs = [torch.cat([img_freqs[i, :a], cap_freqs[i, :b]]) for i, (a, b) in enumerate(zip(img_lens,
                                                                                                      cap_lens))]
        lengths = [len(j) for j in joint]
        h, freqs, mask = pad_batch(joint), pad_batch(joint_freqs), length_mask(lengths, joint[0].device)
        for block in self.layers:
            h = block(h, mask, freqs, c)  # (B, S, dim)
        out = self.all_final_layer[key](h, c)  # (B, S, p·p·pf·C)
        return [unpatchify(out[i], sizes[i], patch_size, f_patch_size, self.config.in_channels)
                for i in range(len(x))]

    def _tokenize(self, x: list[torch.Tensor], cap_feats: list[torch.Tensor], p: int, pf: int):
        """Patchify each latent and pad images and captions to multiples of 32, with RoPE positions."""
        device = x[0].device
        images, captions, sizes = _Sequence([], [], []), _Sequence([], [], []), []
        for latent, caption in zip(x, cap_feats):
            cap_len = len(caption) + (-len(caption)) % SEQ_MULTIPLE
            rows, ids, pad = _pad_to_multiple(caption, coordinate_grid((cap_len, 1, 1), (1, 0, 0), device))
            captions.rows.append(rows), captions.ids.append(ids), captions.pad.append(pad)
            C, Fr, H, W = latent.shape
            grid = (Fr // pf, H // p, W // p)
            lens = self.config.axes_lens
            if cap_len + grid[0] >= lens[0] or grid[1] > lens[1] or grid[2] > lens[2]:
                raise ValueError(f"{len(caption)} caption tokens and a {H}×{W} latent need more RoPE positions than "
                                 f"this model has (axes_lens {list(lens)}): use a shorter prompt or a smaller size")
            rows, ids, pad = _pad_to_multiple(patchify(latent, p, pf), coordinate_grid(grid, (cap_len + 1, 0, 0),
                                                                                       device))
            images.rows.append(rows), images.ids.append(ids), images.pad.append(pad)
            sizes.append((Fr, H, W))
        return images, captions, sizes

    def _embed(self, seq: _Sequence, embedder: nn.Module, pad_token: torch.Tensor):
        """Embed all items' rows at once, put the pad token in pad slots, batch them: (B, S, dim), RoPE factors
        (B, S, d/2), key mask (B, S) or None, and each item's length."""
        lengths = [len(r) for r in seq.rows]
        embedded = embedder(torch.cat(seq.rows))  # (sum L_i, dim)
        embedded = torch.where(torch.cat(seq.pad).unsqueeze(-1), pad_token, embedded)
        freqs = self.rope(torch.cat(seq.ids)).split(lengths)  # (L_i, d/2) complex64 each
        device = embedded.device
        return pad_batch(list(embedded.split(lengths))), pad_batch(list(freqs)), length_mask(lengths, device), lengths
