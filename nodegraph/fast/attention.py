"""Self-attention with q, k and v from one matrix product: three small GEMMs over the same input become one
wider one, which runs nearer the CPU's peak. Cross-attention is unchanged (its k and v are computed once per run
anyway, see models/attention.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodegraph.fast.derived import derived
from nodegraph.fast.linear import packed_linear
from nodegraph.models.attention import Attention, _plain_linear, multi_head_attention


class FastAttention(Attention):
    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None or torch.is_grad_enabled() or not _plain_linear(self.to_q, self.to_k, self.to_v):
            return super().forward(x, context)  # cross-attention, training, or a wrapped (unfused LoRA) layer
        q, k, v = packed_linear(self, x, self._fused_weight(), None).chunk(3, dim=-1)  # (B, N, inner) each
        h = multi_head_attention(q, k, v, self.heads)
        return F.dropout(self.to_out[0](h), self.dropout, self.training)

    def _fused_weight(self) -> torch.Tensor:
        weights = (self.to_q.weight, self.to_k.weight, self.to_v.weight)
        return derived(self, "_fused_cache", weights, lambda: torch.cat(weights))  # (3·inner, dim)
