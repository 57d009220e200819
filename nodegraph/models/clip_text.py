"""CLIP's text transformer (Radford et al., 2021), as transformers' `CLIPTextModel` and
`CLIPTextModelWithProjection` compute it, without importing transformers' modeling code (about 3 s on this CPU).

Same module tree and parameter names as transformers 5 (`embeddings.token_embedding`, `encoder.layers.N.self_attn
.q_proj`, `final_layer_norm`; the projection model wraps the tower in `text_model` beside `text_projection`), so
state dicts, LoRA patching by module name, textual-inversion token tables, clip skip and SDXL's penultimate state
work unchanged. Same operations in the same order as transformers' default ("sdpa") path, so the outputs are
bit-equal (tests/models/test_clip_text.py checks it against transformers in fp32 and bf16):
* attention: `scaled_dot_product_attention(q, k, v, is_causal=True, scale=head_dim**-0.5)` — transformers passes
  no mask tensor when there is no padding mask, only `is_causal`;
* activations: "quick_gelu" `x · sigmoid(1.702 x)` (OpenAI CLIP, SD 1.x), "gelu" exact erf GELU (OpenCLIP: SD 2.x,
  SDXL's bigG);
* pooling: the last hidden state (after the final layer norm) at the end-of-text token — the highest id when the
  config carries the pre-2023 `eos_token_id: 2` (every SD hub repo), else the first `eos_token_id`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nodegraph.models.base import Embedding, LayerNorm, Linear, Model


@dataclass
class CLIPTextConfig:
    """The fields of a text encoder's config.json that the computation reads; defaults are transformers'
    `CLIPTextConfig` defaults, so a config.json that omits a field means what it means there."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    projection_dim: int = 512  # CLIPTextModelWithProjection's `text_embeds` width
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 49406
    eos_token_id: int = 49407  # 2 in configs written before transformers PR #24773: pool at the highest id instead

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CLIPTextConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
}


@dataclass
class CLIPTextOutput:
    """The fields transformers' outputs carry for these models; `out[0]` is the first field that is set
    (`last_hidden_state` for CLIPTextModel, `text_embeds` for the projection model), as with transformers."""

    text_embeds: torch.Tensor | None = None  # (B, P), projection model only
    last_hidden_state: torch.Tensor | None = None  # (B, L, C), after the final layer norm
    pooler_output: torch.Tensor | None = None  # (B, C), CLIPTextModel only
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then each layer's output (no final norm)

    def __getitem__(self, index: int):
        return [v for v in (self.text_embeds, self.last_hidden_state, self.pooler_output, self.hidden_states)
                if v is not None][index]


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.token_embedding = Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = Embedding(config.max_position_embeddings, config.hidden_size)
        # `arange` on the meta device imports sympy through torch's reference implementations (0.5 s): built on
        # meta (loading), the buffer is left empty and the loader fills it where the weights go
        positions = torch.empty((1, config.max_position_embeddings), dtype=torch.long)
        if not positions.is_meta:
            positions.copy_(torch.arange(config.max_position_embeddings))
        self.register_buffer("position_ids", positions, persistent=False)  # (1, max_positions)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[-1]
        if length > self.position_embedding.num_embeddings:
            raise ValueError(f"the token sequence has {length} tokens, but this text encoder takes at most "
                             f"{self.position_embedding.num_embeddings}; encode long prompts in chunks")
        return self.token_embedding(input_ids) + self.position_embedding(self.position_ids[:, :length])  # (B, L, C)


class CLIPAttention(nn.Module):
    """Causal multi-head self-attention."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim ** -0.5
        width = config.hidden_size
        self.k_proj, self.v_proj = Linear(width, width), Linear(width, width)
        self.q_proj, self.out_proj = Linear(width, width), Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, L, _ = h.shape
        heads = lambda t: t.view(B, L, -1, self.head_dim).transpose(1, 2)  # (B, heads, L, head_dim)
        q, k, v = heads(self.q_proj(h)), heads(self.k_proj(h)), heads(self.v_proj(h))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale, is_causal=L > 1)  # (B, heads, L, head_dim)
        out = out.transpose(1, 2).contiguous().reshape(B, L, -1)  # (B, L, C)
        return self.out_proj(out)


class CLIPMLP(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.activation_fn = ACTIVATIONS[config.hidden_act]
        self.fc1 = Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = Linear(config.intermediate_size, config.hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(h)))


class CLIPEncoderLayer(nn.Module):
    """Pre-norm transformer block: h + attn(norm(h)), then h + mlp(norm(h))."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn(self.layer_norm1(h))
        return h + self.mlp(self.layer_norm2(h))


class CLIPEncoder(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))


class CLIPTextModel(Model):
    """Token ids (B, L) → `last_hidden_state` (B, L, C) after the final layer norm, `pooler_output` (B, C) at the
    end-of-text token, and with `output_hidden_states` every layer's input and output (num_hidden_layers + 1)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.config = config
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.token_embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> CLIPTextOutput:
        if attention_mask is not None:  # SD pipelines never pass one: CLIP was trained on padded, unmasked text
            raise ValueError("nodegraph's CLIP text encoder takes no `attention_mask`; pass the padded token ids only")
        input_ids = input_ids.view(-1, input_ids.shape[-1])  # (B, L)
        h = self.embeddings(input_ids)  # (B, L, C)
        states = [h]
        for layer in self.encoder.layers:
            h = layer(h)
            states.append(h)
        last = self.final_layer_norm(h)  # (B, L, C)
        ids = input_ids.to(dtype=torch.int, device=last.device)
        eos = ids.argmax(dim=-1) if self.config.eos_token_id == 2 else (ids == self.config.eos_token_id).int().argmax(
            dim=-1)  # (B,)
        pooled = last[torch.arange(last.shape[0], device=last.device), eos]  # (B, C)
        return CLIPTextOutput(last_hidden_state=last, pooler_output=pooled,
                              hidden_states=tuple(states) if output_hidden_states else None)


class CLIPTextModelWithProjection(Model):
    """CLIPTextModel plus `text_embeds` (B, P): the pooled state through a bias-free projection (SDXL's bigG)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextModel(config)
        self.text_projection = Linear(config.hidden_size, config.projection_dim, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embeddings.token_embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> CLIPTextOutput:
        out = self.text_model(input_ids, attention_mask, output_hidden_states)
        return CLIPTextOutput(text_embeds=self.text_projection(out.pooler_output),
                              last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states)


TEXT_ENCODER_CLASSES = {"CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}
