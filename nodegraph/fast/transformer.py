"""Spatial transformers that stay channels-last and add their residual inside proj_out.

The default Transformer2D hands proj_out an NCHW tensor, as diffusers does (bit-equality in bf16 needs it); in
fast mode that is a reorder to NCHW and, in the packed convolution, one back, twice per transformer. Here the
tokens (B, HW, C) are a view of the channels-last activations both ways, and `proj_out(h) + x` is one oneDNN
call (FastConv2d.forward_plus).
"""

from __future__ import annotations

import torch

from nodegraph.fast.conv import FastConv2d
from nodegraph.models.attention import Transformer2D


class FastTransformer2D(Transformer2D):
    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        linear = self.use_linear_projection
        if not linear and not isinstance(self.proj_out, FastConv2d):
            return super().forward(x, context)
        B, C, H, W = x.shape
        h = self.norm(x)
        if not linear:
            h = self.proj_in(h)  # (B, inner, H, W), channels-last
        h = h.permute(0, 2, 3, 1).reshape(B, H * W, -1)  # (B, HW, inner): a view when channels-last
        if linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, context)
        if linear:
            return self.proj_out(h).reshape(B, H, W, C).permute(0, 3, 1, 2) + x
        return self.proj_out.forward_plus(h.reshape(B, H, W, -1).permute(0, 3, 1, 2), x)  # proj_out(h) + x
