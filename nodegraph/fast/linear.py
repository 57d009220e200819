"""Linear layers on oneDNN with weights packed once (bf16 only).

In bf16 torch's CPU `linear` repacks the weight for its GEMM on every call; `_reorder_linear_weight` does it once
and `_linear_pointwise` takes the packed weight (the pair torch.compile's CPU backend emits). Measured on this CPU
(bf16, 2 threads, rows × in → out, one layer alone): 2048 × 320 → 960: 68 → 32 ms; 2048 × 1280 → 320: 72 → 28
ms; 512 × 640 → 5120: 72 → 60 ms. Inside a whole bf16 UNet call fast mode took 1.96 CPU s with it and 2.08 without
(1 thread, alternated). In fp32 torch's own path (MKL) is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodegraph.fast.derived import derived
from nodegraph.models.base import Linear


def packed_linear(owner: torch.nn.Module, x: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, through a packed copy of `weight` kept on `owner` (repacked when the weight
    object or its contents change)."""
    if x.dtype != torch.bfloat16 or weight.dtype != torch.bfloat16 or x.device.type != "cpu" \
            or torch.is_grad_enabled() or not torch.backends.mkldnn.is_available():
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])  # (N, in)
    packed = derived(owner, "_packed_linear", (weight,),
                     lambda: torch.ops.mkldnn._reorder_linear_weight(weight, rows.shape[0]))
    out = torch.ops.mkldnn._linear_pointwise(rows, packed, bias, "none", [], "")  # (N, out)
    return out.view(*x.shape[:-1], weight.shape[0])


class FastLinear(Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_linear(self, x, self.weight, self.bias)
