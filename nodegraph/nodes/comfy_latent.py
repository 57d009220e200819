"""ComfyUI's LatentUpscale as a node (comfy/utils.py `common_upscale` semantics)."""

from __future__ import annotations

from typing import Literal

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Latent


@node("ComfyLatentUpscale", version=1)
class ComfyLatentUpscale(Node):
    """Resize latents to (height // 8, width // 8) with torch's interpolation mode of that name.

    `crop: center` first cuts the latents to the new aspect ratio around the centre. width = height = 0 leaves
    them as they are; otherwise each side is at least 64 pixels, as in ComfyUI.
    """

    class Inputs(Ports):
        latents: Latent
        upscale_method: Literal["nearest-exact", "bilinear", "area", "bicubic"] = "nearest-exact"
        width: int = Field(512, ge=0, le=16384)
        height: int = Field(512, ge=0, le=16384)
        crop: Literal["disabled", "center"] = "disabled"

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch.nn.functional as F

        x = i.latents  # (B, 4, h, w)
        if i.width == 0 and i.height == 0:
            return {"latents": x}
        width, height = i.width, i.height
        if width == 0:
            width = round(x.shape[-1] * height / x.shape[-2] * 8)  # keep the aspect ratio (sizes in pixels)
        elif height == 0:
            height = round(x.shape[-2] * width / x.shape[-1] * 8)
        width, height = max(64, width) // 8, max(64, height) // 8
        if i.crop == "center":
            old_w, old_h = x.shape[-1], x.shape[-2]
            old_aspect, new_aspect = old_w / old_h, width / height
            dx = round((old_w - old_w * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 0
            dy = round((old_h - old_h * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 0
            x = x.narrow(-2, dy, old_h - 2 * dy).narrow(-1, dx, old_w - 2 * dx)
        return {"latents": F.interpolate(x, size=(height, width), mode=i.upscale_method)}
