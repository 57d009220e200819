"""T5's encoder stack (Raffel et al., 2020, "Exploring the limits of transfer learning with a unified text-to-text
transformer"; v1.1: gated-GELU feed-forward, no parameter sharing with a head), as transformers 5's
`T5EncoderModel` computes it with its default "sdpa" attention, without importing transformers' modeling code.
Flux.1 (`text_encoder_2`) and SD3 (`text_encoder_3`) read its `last_hidden_state` from T5-XXL v1.1.

Same parameter names as transformers' `T5EncoderModel` (`shared`, `encoder.block.N.layer.0.SelfAttention.q`,
`encoder.block.N.layer.1.DenseReluDense.wi_0`, `encoder.final_layer_norm`), so its files load strictly; the
token embedding is one module under two names (`shared` and `encoder.embed_tokens`), as transformers ties them.
Same operations in the same order as transformers 5, so hidden states are bit-equal in fp32, bf16, fp16
(tests/flow/test_t5_encoder.py):
* T5LayerNorm: RMS without mean or bias, float32 variance, the normed states multiplied in float32 unless the
  weight is fp16/bf16 (then cast to it first);
* attention: no 1/sqrt(d) scaling; a relative position bias (bucketed, bidirectional) computed by the first
  block from its own `relative_attention_bias` table and added to the scores of every block; padding becomes
  the bias's minimum value at masked keys, given to SDPA as a float mask;
* feed-forward: wi → act → wo (original T5, ReLU) or act(wi_0) · wi_1 → wo (v1.1, `gelu_new`), the input of wo
  cast to wo's dtype (transformers keeps `wo` in float32 when loading fp16); fp16 activations clamped after each
  sub-layer as transformers does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Embedding, Linear, Model
from nodegraph.models.errors import CheckpointError


@dataclass(frozen=True)
class T5Config:
    """The config.json fields the encoder reads; defaults are transformers' `T5Config` defaults (t5-small).
    T5-XXL v1.1 (Flux, SD3): d_model 4096, d_kv 64, d_ff 10240, 24 layers, 64 heads, gated-gelu, vocab 32128."""

    vocab_size: int = 32128  # SentencePiece vocabulary, padded to a multiple of 128
    d_model: int = 512  # width of the residual stream
    d_kv: int = 64  # per-head width; heads × d_kv need not equal d_model (XXL: 64 × 64 = 4096)
    d_ff: int = 2048  # feed-forward inner width
    num_layers: int = 6  # encoder blocks
    num_heads: int = 8
    relative_attention_num_buckets: int = 32  # rows of the relative position bias table
    relative_attention_max_distance: int = 128  # distances ≥ this share the last bucket of their side
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"  # "relu" (original T5) or "gated-gelu" (v1.1: gelu_new on the gate)

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        """transformers' name for the feed-forward activation ("gated-gelu" means the tanh form, `gelu_new`)."""
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else self.feed_forward_proj.split("-")[-1]

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> "T5Config":
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in raw.items() if k in known and v is not None})
        parts = config.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or config.activation not in ACTIVATIONS:
            raise CheckpointError(f"{where}: `feed_forward_proj` is {config.feed_forward_proj!r}, but nodegraph's T5 "
                                  f"encoder supports {', '.join(sorted(ACTIVATIONS))} or gated-gelu / gated-<act>.")
        if raw.get("is_decoder"):
            raise CheckpointError(f"{where}: `is_decoder` is true; nodegraph's T5 is the encoder only.")
        return config


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation (Hendrycks & Gimpel, 2016), written as transformers' `NewGELUActivation`."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_new": gelu_new, "silu": F.silu}


class T5LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim)
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        h = x * torch.rsqrt(variance + self.variance_epsilon)  # float32 unless x is wider
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            h = h.to(self.weight.dtype)
        return self.weight * h


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional buckets of key − query offsets (Mesh TensorFlow's scheme): half the buckets per side; in each,
    exact buckets for |offset| < half of them, then log-spaced buckets up to `max_distance`, beyond which all
    offsets share the last one."""
    half = num_buckets // 2
    buckets = (relative > 0).to(torch.long) * half  # keys after the query use the upper half
    distance = torch.abs(relative)
    exact = half // 2
    logarithmic = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact)
                           * (half - exact)).to(torch.long)
    logarithmic = torch.min(logarithmic, torch.full_like(logarithmic, half - 1))
    return buckets + torch.where(distance < exact, distance, logarithmic)


class T5Attention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        c, inner = config, config.num_heads * config.d_kv
        self.heads, self.d_kv = c.num_heads, c.d_kv
        self.q, self.k = Linear(c.d_model, inner, bias=False), Linear(c.d_model, inner, bias=False)
        self.v, self.o = Linear(c.d_model, inner, bias=False), Linear(inner, c.d_model, bias=False)
        if has_relative_attention_bias:
            self.buckets, self.max_distance = c.relative_attention_num_buckets, c.relative_attention_max_distance
            self.relative_attention_bias = Embedding(c.relative_attention_num_buckets, c.num_heads)

    def compute_bias(self, length: int, device: torch.device) -> torch.Tensor:
        """(1, heads, L, L): the learned bias for key position − query position, in the table's dtype."""
        position = torch.arange(length, dtype=torch.long, device=device)
        relative = position[None, :] - position[:, None]  # (L query, L key)
        bucket = relative_position_bucket(relative, self.buckets, self.max_distance)
        return self.relative_attention_bias(bucket).permute([2, 0, 1]).unsqueeze(0)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """h (B, L, d_model); bias (1 or B, heads, L, L), padding already folded in."""
        B, L, _ = h.shape
        shape = (B, L, -1, self.d_kv)
        q, k, v = (proj(h).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))  # (B, heads, L, d_kv)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # (B, heads, L, d_kv)
        return self.o(out.transpose(1, 2).contiguous().reshape(B, L, -1).contiguous())


class T5LayerSelfAttention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(config, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return h + self.SelfAttention(self.layer_norm(h), bias)


class T5DenseReluDense(nn.Module):
    """wi → act → wo, or with a gate (v1.1) act(wi_0) · wi_1 → wo; the parameter names are transformers'."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.gated, self.act = config.is_gated, ACTIVATIONS[config.activation]
        if self.gated:
            self.wi_0, self.wi_1 = Linear(config.d_model, config.d_ff, bias=False), \
                Linear(config.d_model, config.d_ff, bias=False)
        else:
            self.wi = Linear(config.d_model, config.d_ff, bias=False)
        self.wo = Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, L, d_model) → (B, L, d_ff) → (B, L, d_model)
        h = self.act(self.wi_0(h)) * self.wi_1(h) if self.gated else self.act(self.wi(h))
        stored = self.wo.weight.dtype
        if h.dtype != stored and stored != torch.int8 and stored.itemsize > 1:  # float8 storage: upcast per layer
            h = h.to(stored)
        return self.wo(h)


class T5LayerFF(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.DenseReluDense = T5DenseReluDense(config)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.DenseReluDense(self.layer_norm(h))


def clamp_fp16(h: torch.Tensor) -> torch.Tensor:
    """transformers keeps fp16 activations finite: ± (max − 1000) once any is infinite, else ± max."""
    if h.dtype != torch.float16:
        return h
    big = torch.finfo(torch.float16).max
    limit = torch.where(torch.isinf(h).any(), big - 1000, big)
    return torch.clamp(h, min=-limit, max=limit)


class T5Block(nn.Module):
    """Pre-norm block: h + attn(norm(h)), then h + ff(norm(h)) (`layer.0` and `layer.1`, transformers' names)."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(config, has_relative_attention_bias), T5LayerFF(config)])

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = clamp_fp16(self.layer[0](h, bias))
        return clamp_fp16(self.layer[1](h))


class T5Stack(nn.Module):
    def __init__(self, config: T5Config, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens  # the encoder model's `shared`, one module under both names
        self.block = nn.ModuleList(T5Block(config, i == 0) for i in range(config.num_layers))
        self.final_layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)


class T5EncoderModel(Model):
    """Token ids (B, L) and an optional padding mask (B, L) → `last_hidden_state` (B, L, d_model)."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared)

    def position_bias(self, length: int, attention_mask: torch.Tensor | None, dtype: torch.dtype,
                      device: torch.device) -> torch.Tensor:
        """The first block's relative bias, (1, heads, L, L); with padding (B, heads, L, L), masked keys set to the
        lowest value of the bias's and the activations' dtypes, as transformers' SDPA path folds them in."""
        first = self.encoder.block[0].layer[0].SelfAttention
        bias = first.compute_bias(length, device)
        if attention_mask is None or bool(attention_mask.all()):
            return bias.contiguous()
        lowest = max(torch.finfo(dtype).min, torch.finfo(bias.dtype).min)
        keep = attention_mask.to(device).bool()[:, None, None, :]  # (B, 1, 1, L)
        return torch.where(keep, bias, lowest).contiguous()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.shared(input_ids)  # (B, L, d_model)
        bias = self.position_bias(input_ids.shape[1], attention_mask, h.dtype, h.device)
        for block in self.encoder.block:
            h = block(h, bias)
        return self.encoder.final_layer_norm(h)


# --- loading --------------------------------------------------------------------------------------------------------

T5_ENCODERS = ("T5EncoderModel",)
_TIED = ("shared.weight", "encoder.embed_tokens.weight")


def build_t5(raw: dict[str, Any], where: str) -> T5EncoderModel:
    """An uninitialised T5EncoderModel on the meta device, from a config.json dict."""
    with torch.device("meta"):
        return T5EncoderModel(T5Config.from_dict(raw, where))


def load_t5_encoder(src, folder: str, raw: dict[str, Any], dtype: torch.dtype, device: torch.device,
                    variant: str | None, allow_pickle: bool) -> T5EncoderModel:
    """The T5 encoder of a transformers folder (a `T5EncoderModel`, or the encoder half of a full T5's file:
    its `decoder.` and `lm_head` entries are skipped). The tied embedding may be stored under either name or both.
    With fp16, `wo` stays float32 as transformers' `_keep_in_fp32_modules` keeps it."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import TRANSFORMERS_WEIGHTS, find_weights, fit, read_entries, read_tensors

    where = src.where(f"{folder}/config.json" if folder else "config.json")
    model = build_t5(raw, where)
    entries = read_entries(src, find_weights(src, folder, TRANSFORMERS_WEIGHTS, variant, allow_pickle))
    entries = {k: e for k, e in entries.items() if not k.startswith(("decoder.", "lm_head."))}
    stored = [k for k in _TIED if k in entries]
    if stored:  # one tensor under both names, as the model holds it
        entries = {**entries, **{k: entries[stored[0]] for k in _TIED}}
    fitted = fit(entries, model, lambda k: k, f"the T5 encoder of {where}")
    del fitted["encoder.embed_tokens.weight"]  # the same module as `shared`
    wide = {k: e for k, e in fitted.items() if dtype == torch.float16 and k.endswith(".DenseReluDense.wo.weight")}
    tensors = read_tensors({k: e for k, e in fitted.items() if k not in wide}, dtype, device)
    install_weights(model, {**tensors, **read_tensors(wide, torch.float32, device)})
    return model.eval()
