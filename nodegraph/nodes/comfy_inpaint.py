"""ComfyUI's inpainting and outpainting nodes: LoadImage's MASK, VAEEncodeForInpaint, ImagePadForOutpaint, and the
mask's part in sampling (ComfyInpaint, read by ComfyDenoise as `inpaint`; nodegraph/comfy/inpaint.py)."""

from __future__ import annotations

import math
from typing import Any

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, FilePath, Image, Latent, Tensor


@node("ComfyLoadImageMask", version=1)
class ComfyLoadImageMask(Node):
    """LoadImage's MASK: 1 − alpha of the file's first frame, (1, 1, H, W); a file without alpha gives a 64×64 mask
    of zeros, as ComfyUI's LoadImage does."""

    class Inputs(Ports):
        path: FilePath

    class Outputs(Ports):
        mask: Tensor

    def run(self, i, ctx):
        import numpy as np
        import torch
        from PIL import Image as PILImage, ImageOps

        with PILImage.open(i.path) as img:
            img = ImageOps.exif_transpose(img)
            if "A" not in img.getbands():
                return {"mask": torch.zeros((1, 1, 64, 64))}
            alpha = np.asarray(img.getchannel("A")).astype(np.float32) / 255.0
        return {"mask": (1.0 - torch.from_numpy(alpha))[None, None]}


@node("ComfyVAEEncodeForInpaint", version=1)
class ComfyVAEEncodeForInpaint(Node):
    """VAEEncodeForInpaint: the mask resized to the image (bilinear), both center-cropped to a multiple of 8; the
    masked pixels (rounded mask) set to grey before encoding (posterior mode, model space); the noise mask is the
    rounded mask grown by `grow_mask_by` pixels (a box filter), at pixel resolution."""

    class Inputs(Ports):
        vae: VAE
        image: Image
        mask: Tensor
        grow_mask_by: int = Field(6, ge=0, le=64)

    class Outputs(Ports):
        latents: Latent
        noise_mask: Tensor

    def run(self, i, ctx):
        import torch
        import torch.nn.functional as F

        x = i.image.float()  # (B, 3, H, W)
        H, W = x.shape[-2] // 8 * 8, x.shape[-1] // 8 * 8
        mask = F.interpolate(i.mask.reshape(-1, 1, *i.mask.shape[-2:]).float(), size=x.shape[-2:], mode="bilinear")
        top, left = (x.shape[-2] % 8) // 2, (x.shape[-1] % 8) // 2
        x, mask = x[..., top:top + H, left:left + W], mask[..., top:top + H, left:left + W]
        grown = mask
        if i.grow_mask_by:
            kernel = torch.ones((1, 1, i.grow_mask_by, i.grow_mask_by))
            grown = F.conv2d(mask.round(), kernel, padding=math.ceil((i.grow_mask_by - 1) / 2)).clamp(0, 1)
        x = (x - 0.5) * (1.0 - mask.round()) + 0.5  # (B, 3, H, W): masked pixels grey
        vae = i.vae
        with torch.no_grad():
            mode = vae.encode(x.to(device=ctx.device, dtype=vae.dtype) * 2 - 1).mode()
        return {"latents": (mode * vae.config.scaling_factor).to(ctx.dtype),
                "noise_mask": grown[..., :H, :W].round()}


@node("ComfyImagePadForOutpaint", version=1)
class ComfyImagePadForOutpaint(Node):
    """ImagePadForOutpaint: the image on a grey canvas grown by left/top/right/bottom pixels; the mask is 1 on the
    new border and, inside, ((feathering − d) / feathering)² within `feathering` pixels of a padded side (d the
    distance to it), when 2·feathering is less than the image's sides."""

    class Inputs(Ports):
        image: Image
        left: int = Field(0, ge=0, le=16384)
        top: int = Field(0, ge=0, le=16384)
        right: int = Field(0, ge=0, le=16384)
        bottom: int = Field(0, ge=0, le=16384)
        feathering: int = Field(40, ge=0, le=16384)

    class Outputs(Ports):
        image: Image
        mask: Tensor

    def run(self, i, ctx):
        import torch

        B, C, H, W = i.image.shape
        out = torch.full((B, C, H + i.top + i.bottom, W + i.left + i.right), 0.5, dtype=i.image.dtype,
                         device=i.image.device)
        out[..., i.top:i.top + H, i.left:i.left + W] = i.image
        mask = torch.ones((H + i.top + i.bottom, W + i.left + i.right))
        inner = torch.zeros((H, W))
        f = i.feathering
        if f > 0 and 2 * f < H and 2 * f < W:
            rows, cols = torch.arange(H)[:, None].float(), torch.arange(W)[None, :].float()
            far_h, far_w = torch.full_like(rows, H), torch.full_like(cols, W)
            d = torch.minimum(torch.minimum(rows if i.top else far_h, H - rows if i.bottom else far_h),
                              torch.minimum(cols if i.left else far_w, W - cols if i.right else far_w))
            inner = torch.where(d < f, ((f - d) / f) ** 2, torch.zeros_like(d))
        mask[i.top:i.top + H, i.left:i.left + W] = inner
        return {"image": out, "mask": mask[None, None]}


@node("ComfyInpaint", version=1)
class ComfyInpaint(Node):
    """What sampling needs to inpaint ComfyUI's way: the noise mask at the latents' size, the latents, the run's first
    noise (the same draw as ComfyNoise's from `seed`), and whether the UNet reads them as extra channels
    (`concat`: an inpainting model)."""

    class Inputs(Ports):
        latents: Latent
        noise_mask: Tensor
        seed: int = Field(0, ge=0, le=2**64 - 1)
        concat: bool = False

    class Outputs(Ports):
        inpaint: Any

    def run(self, i, ctx):
        import torch

        from nodegraph.comfy.inpaint import latent_mask

        x = i.latents
        noise = torch.randn(x.shape, generator=torch.Generator("cpu").manual_seed(i.seed), dtype=torch.float32)
        return {"inpaint": {"mask": latent_mask(i.noise_mask, x), "latent": x,
                            "noise": noise.to(device=x.device, dtype=x.dtype), "concat": i.concat}}
