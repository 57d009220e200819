"""ESRGAN's RRDBNet (Wang et al. 2018, "ESRGAN: Enhanced Super-Resolution GANs"), as Real-ESRGAN (Wang et al. 2021)
names and shapes it: the image upscalers ComfyUI loads with UpscaleModelLoader (through spandrel).

x (B, 3, H, W) in [0, 1] → conv_first → nb Residual-in-Residual Dense Blocks → conv_body, added to the first
features → two ×2 nearest upsamplings each followed by a conv and LeakyReLU(0.2) → conv_hr, LeakyReLU → conv_last:
(B, 3, 4H, 4W). Real-ESRGAN's ×2 and ×1 models first fold 2×2 (4×4) pixel blocks into channels (pixel unshuffle),
so conv_first reads 12 (48) channels. Files in the original ESRGAN layout (`model.0`, `model.1.sub.N.RDB1…`) are
renamed to this layout when read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class RRDBConfig:
    in_channels: int = 3
    out_channels: int = 3
    features: int = 64  # nf
    blocks: int = 23  # nb, RRDBs in the trunk
    growth: int = 32  # gc, channels each dense layer adds
    unshuffle: int = 1  # pixel-unshuffle factor at the input (Real-ESRGAN ×2: 2, ×1: 4)

    @property
    def scale(self) -> int:
        return 4 // self.unshuffle


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


class DenseBlock(nn.Module):
    """Five 3×3 convs, each reading the block input and every earlier output; 0.2-scaled residual."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        for k in range(1, 6):
            setattr(self, f"conv{k}", nn.Conv2d(nf + (k - 1) * gc, gc if k < 5 else nf, 3, 1, 1))

    def forward(self, x):
        feats = [x]
        for k in range(1, 5):
            feats.append(_lrelu(getattr(self, f"conv{k}")(torch.cat(feats, 1))))  # (B, nf + k·gc, H, W)
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = DenseBlock(nf, gc), DenseBlock(nf, gc), DenseBlock(nf, gc)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, config: RRDBConfig):
        super().__init__()
        c, nf = config, config.features
        self.config = c
        self.conv_first = nn.Conv2d(c.in_channels * c.unshuffle ** 2, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, c.growth) for _ in range(c.blocks)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, c.out_channels, 3, 1, 1)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x):  # (B, 3, H, W)
        if self.config.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.config.unshuffle)  # (B, 3·u², H/u, W/u)
        feat = self.conv_first(x)  # (B, nf, h, w)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))  # (B, nf, 2h, 2w)
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))  # (B, nf, 4h, 4w)
        return self.conv_last(_lrelu(self.conv_hr(feat)))


_OLD_TAIL = {"model.3": "conv_up1", "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}


def to_new_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original ESRGAN ×4 names (`model.0`, `model.1.sub.N.RDBk.convj.0`, `model.1.sub.{nb}`, `model.3` …) →
    Real-ESRGAN's; a state already in Real-ESRGAN's layout (or with `params_ema` / `params` wrappers) is unwrapped."""
    for wrapper in ("params_ema", "params"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if "conv_first.weight" in state:
        return dict(state)
    blocks = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))), default=-1)
    out = {}
    for key, value in state.items():
        name, _, kind = key.rpartition(".")
        if name == "model.0":
            new = "conv_first"
        elif m := re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0", name):
            new = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}"
        elif name == f"model.1.sub.{blocks}":
            new = "conv_body"
        elif name in _OLD_TAIL:
            new = _OLD_TAIL[name]
        else:
            raise ValueError(f"`{key}` is not a tensor of an ESRGAN ×4 model (old layout)")
        out[f"{new}.{kind}"] = value
    return out


def config_from_state(state: dict[str, torch.Tensor]) -> RRDBConfig:
    """The model's sizes from its tensors' shapes (the file carries no config)."""
    first, last = state["conv_first.weight"], state["conv_last.weight"]  # (nf, in·u², 3, 3), (out, nf, 3, 3)
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    growth = state["body.0.rdb1.conv1.weight"].shape[0]
    unshuffle = {3: 1, 12: 2, 48: 4}.get(first.shape[1])
    if unshuffle is None or last.shape[0] != 3:
        raise ValueError(f"an ESRGAN model reads 3, 12 or 48 channels and writes 3; this one reads {first.shape[1]} "
                         f"and writes {last.shape[0]}")
    return RRDBConfig(3, 3, first.shape[0], blocks, growth, unshuffle)


def load_rrdbnet(state: dict[str, torch.Tensor]) -> RRDBNet:
    state = to_new_layout(state)
    model = RRDBNet(config_from_state(state))
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
