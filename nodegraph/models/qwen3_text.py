"""Qwen3's decoder stack used as a text encoder (Qwen Team, 2025, "Qwen3 technical report"), as transformers'
`Qwen3Model` computes it with its default "sdpa" attention, without importing transformers' modeling code.

Z-Image reads the output of the second-to-last decoder layer (`hidden_states[-2]`), so `forward` can stop there
(`layers`): the last layer and the final norm are loaded, for a strict key check, but never run.
Same parameter names as transformers' `Qwen3Model` (`embed_tokens`, `layers.N.self_attn.q_proj`, `norm`); a
`Qwen3ForCausalLM` file (`model.` prefix, `lm_head.weight`) loads too. Same operations in the same order as
transformers 5, so hidden states are bit-equal in fp32 and bf16 (tests/flow/test_qwen3_encoder.py):
* RMSNorm: float32 mean of squares, `weight · normed.to(input dtype)`; per-head QK-norm before RoPE;
* RoPE: the half-split ("rotate_half") form, cos/sin from float32 angles cast to the hidden dtype;
* attention: grouped-query; with a padding mask, keys/values are repeated per group and SDPA gets a boolean
  (B, 1, L, L) causal-and-padding mask; without padding, `is_causal=True` and SDPA's `enable_gqa`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nodegraph.models.base import Embedding, Linear, Model
from nodegraph.models.errors import CheckpointError


@dataclass(frozen=True)
class Qwen3Config:
    """The config.json fields the computation reads; defaults are transformers' `Qwen3Config` defaults."""

    vocab_size: int = 151936
    hidden_size: int = 4096  # Qwen3-4B (Z-Image's encoder): 2560
    intermediate_size: int = 22016  # SwiGLU width
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32  # grouped-query attention: heads share keys/values in groups
    head_dim: int = 128  # not hidden_size / heads in Qwen3 (4B: 32 × 128 = 4096 ≠ 2560)
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0  # transformers 4 writes it at the top level, 5 inside `rope_parameters`
    attention_bias: bool = False
    hidden_act: str = "silu"

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> "Qwen3Config":
        def refuse(key: str, value: Any, allowed: str) -> CheckpointError:
            return CheckpointError(f"{where}: `{key}` is {value!r}, but nodegraph's Qwen3 text encoder supports "
                                   f"{allowed}.")

        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise refuse("rope_parameters", rope, "the default RoPE only (every released Qwen3 text model)")
        if raw.get("use_sliding_window"):
            raise refuse("use_sliding_window", raw["use_sliding_window"], "false only")
        if raw.get("hidden_act", "silu") != "silu":
            raise refuse("hidden_act", raw["hidden_act"], "'silu' only")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        if "rope_theta" in rope:
            values["rope_theta"] = rope["rope_theta"]
        config = cls(**values)
        if config.num_attention_heads % config.num_key_value_heads:
            raise refuse("num_key_value_heads", config.num_key_value_heads,
                         f"a divisor of num_attention_heads ({config.num_attention_heads})")
        return config


class Qwen3RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim)
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Qwen3Attention(nn.Module):
    def __init__(self, config: Qwen3Config):
        super().__init__()
        c, d = config, config.head_dim
        self.head_dim, self.groups = d, c.num_attention_heads // c.num_key_value_heads
        self.q_proj = Linear(c.hidden_size, c.num_attention_heads * d, bias=c.attention_bias)
        self.k_proj = Linear(c.hidden_size, c.num_key_value_heads * d, bias=c.attention_bias)
        self.v_proj = Linear(c.hidden_size, c.num_key_value_heads * d, bias=c.attention_bias)
        self.o_proj = Linear(c.num_attention_heads * d, c.hidden_size, bias=c.attention_bias)
        self.q_norm, self.k_norm = Qwen3RMSNorm(d, c.rms_norm_eps), Qwen3RMSNorm(d, c.rms_norm_eps)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        B, L, _ = h.shape
        shape = (B, L, -1, self.head_dim)
        q = self.q_norm(self.q_proj(h).view(shape)).transpose(1, 2)  # (B, heads, L, d)
        k = self.k_norm(self.k_proj(h).view(shape)).transpose(1, 2)  # (B, kv_heads, L, d)
        v = self.v_proj(h).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (1, 1, L, d)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        extra = {}
        if self.groups > 1 and mask is None:
            extra["enable_gqa"] = True
        elif self.groups > 1:  # repeat each key/value head for its group of query heads
            k, v = (t[:, :, None].expand(B, t.shape[1], self.groups, L, self.head_dim)
                    .reshape(B, -1, L, self.head_dim) for t in (k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim ** -0.5,
                                             is_causal=mask is None and L > 1, **extra)  # (B, heads, L, d)
        return self.o_proj(out.transpose(1, 2).contiguous().reshape(B, L, -1).contiguous())


class Qwen3MLP(nn.Module):
    def __init__(self, config: Qwen3Config):
        super().__init__()
        width, inner = config.hidden_size, config.intermediate_size
        self.gate_proj, self.up_proj = Linear(width, inner, bias=False), Linear(width, inner, bias=False)
        self.down_proj = Linear(inner, width, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Qwen3DecoderLayer(nn.Module):
    """Pre-norm block: h + attn(norm(h)), then h + mlp(norm(h))."""

    def __init__(self, config: Qwen3Config):
        super().__init__()
        self.self_attn, self.mlp = Qwen3Attention(config), Qwen3MLP(config)
        self.input_layernorm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Qwen3TextModel(Model):
    """Token ids (B, L) and a padding mask (B, L) → hidden states, the way transformers' `Qwen3Model` returns them
    with `output_hidden_states`: [embeddings, layer 1, …, layer N-1, final-normed layer N]."""

    def __init__(self, config: Qwen3Config):
        super().__init__()
        self.config = config
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Qwen3DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = Qwen3RMSNorm(config.hidden_size, config.rms_norm_eps)

    def rope(self, length: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (1, L, head_dim) in `dtype`, from float32 angles (transformers' default rotary embedding)."""
        d = self.config.head_dim
        inv_freq = 1.0 / (self.config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float, device=device) / d))
        positions = torch.arange(length, device=device)[None]  # (1, L)
        freqs = positions[..., None].float() * inv_freq  # (1, L, d/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (1, L, d)
        return (angles.cos() * 1.0).to(dtype), (angles.sin() * 1.0).to(dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                layers: int | None = None, masked: bool | None = None) -> list[torch.Tensor]:
        """Hidden states (B, L, hidden) after the embeddings and each layer; with `layers` = k < N, only the first
        k layers run (the list ends with layer k's raw output); with all N, the last entry is final-normed.
        `masked`: take the explicit-mask attention path even when `attention_mask` masks nothing (as transformers
        does for the longer, padded batch this one was cut from); None: only when something is masked."""
        n = self.config.num_hidden_layers if layers is None else layers
        h = self.embed_tokens(input_ids)  # (B, L, hidden)
        B, L = input_ids.shape
        cos, sin = self.rope(L, h.dtype, h.device)
        mask = None
        if masked is None:
            masked = attention_mask is not None and not bool(attention_mask.all())
        if masked:
            causal = torch.ones(L, L, dtype=torch.bool, device=h.device).tril()  # (L, L): key ≤ query
            mask = causal[None, None] & attention_mask.bool()[:, None, None, :]  # (B, 1, L, L)
        states = [h]
        for layer in self.layers[:n]:
            h = layer(h, cos, sin, mask)
            states.append(h)
        if n == self.config.num_hidden_layers:
            states[-1] = self.norm(h)
        return states


# --- loading and prompt encoding ------------------------------------------------------------------------------------

QWEN3_ENCODERS = ("Qwen3Model", "Qwen3ForCausalLM")  # a causal-LM file loads as its decoder stack
QWEN_TOKENIZERS = ("Qwen2Tokenizer", "Qwen2TokenizerFast")


def is_qwen3_config(raw: dict[str, Any]) -> bool:
    return raw.get("model_type") == "qwen3" or (raw.get("architectures") or [None])[0] in QWEN3_ENCODERS


def build_qwen3(raw: dict[str, Any], where: str) -> Qwen3TextModel:
    """An uninitialised Qwen3TextModel on the meta device, from a config.json dict."""
    with torch.device("meta"):
        return Qwen3TextModel(Qwen3Config.from_dict(raw, where))


def _qwen3_key(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


def load_qwen3_text_encoder(src, folder: str, raw: dict[str, Any], dtype: torch.dtype, device: torch.device,
                            variant: str | None, allow_pickle: bool) -> Qwen3TextModel:
    """The Qwen3 text encoder of a transformers folder (`Qwen3Model`, or `Qwen3ForCausalLM` without its head)."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import TRANSFORMERS_WEIGHTS, find_weights, fit, read_entries, read_tensors

    where = src.where(f"{folder}/config.json" if folder else "config.json")
    model = build_qwen3(raw, where)
    entries = read_entries(src, find_weights(src, folder, TRANSFORMERS_WEIGHTS, variant, allow_pickle))
    entries = {k: e for k, e in entries.items() if k != "lm_head.weight"}  # the LM head is never used
    fitted = fit(entries, model, _qwen3_key, f"the Qwen3 text encoder of {where}")
    install_weights(model, read_tensors(fitted, dtype, device))
    return model.eval()


def is_qwen_tokenizer(src, folder: str, declared: str) -> bool:
    if declared in QWEN_TOKENIZERS:
        return True
    config = f"{folder}/tokenizer_config.json" if folder else "tokenizer_config.json"
    return "tokenizer_config.json" in src.files(folder) and \
        src.read_json(config).get("tokenizer_class") in QWEN_TOKENIZERS


def load_qwen_tokenizer(src, folder: str):
    """The QwenTokenizer of a tokenizer folder (tokenizer.json required; chat template beside it)."""
    from nodegraph.models.qwen_tokenizer import QwenTokenizer

    names = src.files(folder)
    where = src.where(folder) if folder else src.name
    if "tokenizer.json" not in names:
        raise CheckpointError(f"no tokenizer.json in {where}: a Qwen tokenizer folder holds tokenizer.json, "
                              f"tokenizer_config.json and its chat template; it holds {', '.join(names) or 'nothing'}.")
    needed = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")  # not vocab.json / merges.txt
    local = [src.fetch(f"{folder}/{n}" if folder else n) for n in names if n in needed]
    try:
        return QwenTokenizer.from_folder(local[0].parent)
    except Exception as e:
        raise CheckpointError(f"the tokenizer in {where} could not be read: {e}") from None


@torch.no_grad()
def encode_prompts(text_encoder: Qwen3TextModel, tokenizer, prompts: list[str], max_sequence_length: int = 512,
                   device: torch.device | str | None = None, trim_padding: bool = False) -> list[torch.Tensor]:
    """Prompts → one (L_i, hidden) tensor each, as diffusers' `ZImagePipeline._encode_prompt` makes them: each
    prompt in the chat template (one user turn, assistant turn opened, thinking enabled), the batch padded to
    `max_sequence_length` and truncated, the output of the second-to-last layer (`hidden_states[-2]`), and only the
    positions the mask keeps. Encode the prompts that diffusers encodes together in one call (positives in one,
    negatives in another): whether any prompt is padded decides the attention kernel, hence the last bits.
    `device`: where the ids go (default: the encoder's); the tensors come back there, in the encoder's dtype.

    `trim_padding`: run the encoder on the longest prompt's tokens only instead of all `max_sequence_length`
    (typically 20-60 of 512: that much less encoder compute). The attention is causal and the padding comes last,
    so the kept positions are the same computation, but on other matrix shapes: the values agree to the last bits
    only (fp32: within 1e-6 relative, measured), so the default keeps diffusers' padded length.
    """
    texts = [tokenizer.apply_chat_template(p, enable_thinking=True) for p in prompts]
    ids, mask = tokenizer(texts, max_sequence_length)  # (B, L) each
    device = text_encoder.device if device is None else torch.device(device)
    mask = mask.to(device).bool()
    padded = not bool(mask.all())  # transformers then takes the explicit-mask attention path
    if trim_padding:
        longest = int(mask.sum(dim=1).max())
        ids, mask = ids[:, :longest], mask[:, :longest]
    layers = max(text_encoder.config.num_hidden_layers - 1, 0)
    states = text_encoder(ids.to(device), mask, layers=layers, masked=padded)[-1]  # (B, L, hidden) = hidden_states[-2]
    return [states[i][mask[i]] for i in range(len(prompts))]
