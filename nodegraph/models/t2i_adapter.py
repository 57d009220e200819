"""T2I-Adapter (Mou et al. 2023, "T2I-Adapter: Learning Adapters to Dig out More Controllable Ability for
Text-to-Image Diffusion Models"): a small convolutional network run once on the hint image; its four feature
maps, × strength, are added to the UNet's down path after the last resnet (+ attention) of each down block, at
every step (diffusers' `down_intrablock_additional_residuals`; ComfyUI's `control["input"]`).

This is the full SD1.x adapter as TencentARC ships it and ComfyUI's `load_t2i_adapter` reads it (comfy/
t2i_adapter/adapter.py `Adapter` with `sk=True`, two resnet blocks a level, widths c, 2c, 4c, 4c):
pixel-unshuffle by 8, `conv_in`, then per level a resnet block that (from level 1 on) first halves the size
(average pool, or a stride-2 conv when the file has `down_opt.op.weight`) and maps the width with a `ksize`
conv (`in_conv`) where it changes. Keys: `conv_in.*`, `body.{2·level + block}.{in_conv,block1,block2,
down_opt.op}.*`; diffusers' layout (`adapter.body.{level}.resnets.{block}.*`, `adapter.body.{level}.in_conv`)
is renamed to it, as ComfyUI does.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from nodegraph.models.errors import CheckpointError

UNSHUFFLE = 8  # SD1.x adapters: 8×8 pixels → one position of the 1/8-size latent grid
BLOCKS_PER_LEVEL = 2  # ComfyUI's `nums_rb`


class Downsample(nn.Module):
    """Halve H and W: 2×2 average pooling, or a 3×3 stride-2 conv (`op.weight` in the file).

    An odd side is zero-padded by one on both ends and the zeros counted in the mean, as ComfyUI's `Downsample`
    pools (diffusers' `ceil_mode` pooling averages the last row alone instead: equal only on even sides)."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op is not None:
            return self.op(x)
        pad = (x.shape[-2] % 2, x.shape[-1] % 2)
        return nn.functional.avg_pool2d(x, 2, 2, padding=pad, count_include_pad=True)  # (B, C, ⌈H/2⌉, ⌈W/2⌉)


class ResnetBlock(nn.Module):
    """[down] → [in_conv: c_in → c_out] → x + block2(relu(block1(x)))."""

    def __init__(self, c_in: int, c_out: int, down: bool, ksize: int, use_conv: bool):
        super().__init__()
        self.down_opt = Downsample(c_in, use_conv) if down else None
        self.in_conv = nn.Conv2d(c_in, c_out, ksize, padding=ksize // 2) if c_in != c_out else None
        self.block1 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.act = nn.ReLU()
        self.block2 = nn.Conv2d(c_out, c_out, ksize, padding=ksize // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)  # (B, c_in, H/2, W/2)
        if self.in_conv is not None:
            x = self.in_conv(x)  # (B, c_out, H, W)
        return x + self.block2(self.act(self.block1(x)))


class T2IAdapter(nn.Module):
    """(B, C, 8h, 8w) hint in [0, 1] → four features (B, c·[1, 2, 4, 4][k], h/2^k, w/2^k), k = 0..3."""

    is_t2i_adapter = True  # what the ComfyUI sampler asks to tell an adapter from a ControlNet

    def __init__(self, in_channels: int = 3, channels: int = 320, ksize: int = 1, use_conv: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.channels = [channels, channels * 2, channels * 4, channels * 4]
        self.unshuffle = nn.PixelUnshuffle(UNSHUFFLE)
        self.conv_in = nn.Conv2d(in_channels * UNSHUFFLE ** 2, channels, 3, padding=1)
        self.body = nn.ModuleList(
            ResnetBlock(self.channels[max(level - 1, 0)] if block == 0 else self.channels[level],
                        self.channels[level], down=level > 0 and block == 0, ksize=ksize, use_conv=use_conv)
            for level in range(len(self.channels)) for block in range(BLOCKS_PER_LEVEL))

    def forward(self, hint: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv_in(self.unshuffle(hint))  # (B, 64·C, h, w) → (B, c, h, w)
        features = []
        for level in range(len(self.channels)):
            for block in range(BLOCKS_PER_LEVEL):
                x = self.body[level * BLOCKS_PER_LEVEL + block](x)
            features.append(x)  # (B, channels[level], h/2^level, w/2^level)
        return features


_DIFFUSERS_RESNET = re.compile(r"^adapter\.body\.(\d+)\.resnets\.(\d+)\.")
_DIFFUSERS_LEVEL = re.compile(r"^adapter\.body\.(\d+)\.")


def comfy_name(key: str) -> str:
    """A diffusers full-adapter key in TencentARC's layout (ComfyUI's renaming in `load_t2i_adapter`)."""
    key = _DIFFUSERS_RESNET.sub(lambda m: f"body.{int(m[1]) * BLOCKS_PER_LEVEL + int(m[2])}.", key)
    key = _DIFFUSERS_LEVEL.sub(lambda m: f"body.{int(m[1]) * BLOCKS_PER_LEVEL}.", key)
    return key[len("adapter."):] if key.startswith("adapter.") else key


def load_t2i_adapter(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu", allow_pickle: bool = False) -> T2IAdapter:
    """A full SD1.x T2I-Adapter from one `.safetensors` (or, with `allow_pickle`, `.pth`) file."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.single_file.loader import opened
    from nodegraph.models.single_file.plan import Take, check, read

    ckpt = opened(path, allow_pickle)
    shown = str(ckpt.path)
    plan = {comfy_name(k): Take(k) for k in ckpt.shapes}
    shapes = {name: ckpt.shapes[take.key] for name, take in plan.items()}
    if "conv_in.weight" not in shapes or "body.0.block2.weight" not in shapes:
        kind = "a light T2I-Adapter" if "body.0.in_conv.weight" in shapes else "not a full T2I-Adapter"
        raise CheckpointError(f"{shown} is {kind}: nodegraph runs the full SD1.x adapter (`conv_in` + "
                              f"`body.N.block1/2` keys); use TencentARC's full adapter for SD1.x")
    c, cin = shapes["conv_in.weight"][:2]
    if cin % UNSHUFFLE ** 2 or cin // UNSHUFFLE ** 2 not in (1, 3):
        raise CheckpointError(f"{shown}: `conv_in` takes {cin} channels; nodegraph runs SD1.x adapters (192: "
                              f"RGB, 64: one channel), not SDXL ones (256/768)")
    use_conv = any(k.endswith("down_opt.op.weight") for k in shapes)
    with torch.device("meta"):
        model = T2IAdapter(cin // UNSHUFFLE ** 2, c, shapes["body.0.block2.weight"][-1], use_conv)
    check(plan, list(ckpt.shapes), dict(ckpt.shapes), model, "a full SD1.x T2I-Adapter", shown)
    install_weights(model, read(plan, ckpt.entries, model, dtype, torch.device(device)))
    return model.eval()
