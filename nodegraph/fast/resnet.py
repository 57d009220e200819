"""Resnet blocks whose last convolution and residual sum are one oneDNN call (see FastConv2d.forward_plus)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodegraph.fast.conv import FastConv2d
from nodegraph.models.resnet import ResnetBlock2D


class FastResnetBlock2D(ResnetBlock2D):
    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(self.conv2, FastConv2d) or self.output_scale_factor != 1.0:
            return super().forward(x, temb)
        h = self.conv1(self.act(self.norm1(x)))  # (B, C_out, H, W), channels-last
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(self.act(temb))[:, :, None, None]
        h = F.dropout(self.act(self.norm2(h)), self.dropout, self.training)
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return self.conv2.forward_plus(h, shortcut)  # conv2(h) + shortcut
