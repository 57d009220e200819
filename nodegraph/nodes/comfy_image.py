"""ComfyUI's image-resizing nodes (ImageScale, ImageScaleToTotalPixels), LatentUpscaleBy, with its rule
(nodegraph/comfy/resize.py), and its Canny; usable in hand-written graphs as they are."""

from __future__ import annotations

from typing import Literal

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Image, Latent

ImageMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


@node("ComfyImageScale", version=1)
class ComfyImageScale(Node):
    """Resize images to width × height (ComfyUI's ImageScale). A 0 side keeps the aspect ratio from the other;
    both 0 leaves the images as they are; `crop: center` first cuts them to the new aspect ratio."""

    class Inputs(Ports):
        image: Image
        upscale_method: ImageMethod = "nearest-exact"
        width: int = Field(512, ge=0, le=16384)
        height: int = Field(512, ge=0, le=16384)
        crop: Literal["disabled", "center"] = "disabled"

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        from nodegraph.comfy.resize import common_upscale, scale_size

        x = i.image  # (B, 3, H, W)
        width, height = scale_size(x.shape[-1], x.shape[-2], i.width, i.height)
        if (i.width, i.height) == (0, 0):
            return {"image": x}
        return {"image": common_upscale(x, width, height, i.upscale_method, i.crop)}


@node("ComfyImageScaleToTotalPixels", version=1)
class ComfyImageScaleToTotalPixels(Node):
    """Resize images to about `megapixels`·1024² pixels, keeping the aspect ratio (ComfyUI's
    ImageScaleToTotalPixels): each side is round(side · √(total / (W·H)) / resolution_steps) · resolution_steps."""

    class Inputs(Ports):
        image: Image
        upscale_method: ImageMethod = "nearest-exact"
        megapixels: float = Field(1.0, gt=0.0, le=256.0)
        resolution_steps: int = Field(1, ge=1, le=256)

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        from nodegraph.comfy.resize import common_upscale, total_pixels_size

        x = i.image  # (B, 3, H, W)
        width, height = total_pixels_size(x.shape[-1], x.shape[-2], i.megapixels, i.resolution_steps)
        if width < 1 or height < 1:
            raise ValueError(f"`megapixels` {i.megapixels} makes this {x.shape[-1]}×{x.shape[-2]} image "
                             f"{width}×{height}; give a larger value")
        return {"image": common_upscale(x, width, height, i.upscale_method)}


@node("ComfyLatentUpscaleBy", version=1)
class ComfyLatentUpscaleBy(Node):
    """Resize latents by a factor (ComfyUI's LatentUpscaleBy): each side round(side · scale_by)."""

    class Inputs(Ports):
        latents: Latent
        upscale_method: Literal["nearest-exact", "bilinear", "area", "bicubic"] = "nearest-exact"
        scale_by: float = Field(1.5, gt=0.0, le=8.0)

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        from nodegraph.comfy.resize import common_upscale

        x = i.latents  # (B, 4, h, w)
        return {"latents": common_upscale(x, round(x.shape[-1] * i.scale_by), round(x.shape[-2] * i.scale_by),
                                          i.upscale_method)}


@node("ComfyCanny", version=1)
class ComfyCanny(Node):
    """ComfyUI's Canny (comfy_extras/nodes_canny.py): kornia's `canny` on the images (grayscale, 5×5 Gaussian of
    σ 1, Sobel magnitude, non-maximum suppression, hysteresis between the two thresholds), its edge map as a
    3-channel image. ComfyUI calls kornia for this, so nodegraph does too (the `comfy` extra: pip install kornia):
    the same kornia gives the same edges."""

    class Inputs(Ports):
        image: Image
        low_threshold: float = Field(0.4, ge=0.01, le=0.99)
        high_threshold: float = Field(0.8, ge=0.01, le=0.99)

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        try:
            from kornia.filters import canny
        except ImportError:
            raise ValueError("ComfyUI's Canny is kornia's; install it (pip install kornia: the `comfy` extra)") \
                from None
        _, edges = canny(i.image, i.low_threshold, i.high_threshold)  # (B, 1, H, W) of 0 / 1
        return {"image": edges.repeat(1, 3, 1, 1)}
