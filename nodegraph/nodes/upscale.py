"""Upscaling between two denoising passes: A1111's "hires fix" (generate small, enlarge, refine with img2img)."""

from __future__ import annotations

from typing import Literal

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, Generator, Latent


@node("HiresUpscale", version=1)
class HiresUpscale(Node):
    """Enlarge finished latents `scale` times (the pixel size rounded down to a multiple of 8), ready for img2img.

    `latent`: bilinear interpolation of the latents themselves (A1111's default "Latent" upscaler; no VAE
    round trip). `image`: decode, save-quality 8-bit pixels, Lanczos resize (PIL), encode again sampling the
    posterior with `generator`, exactly what passing diffusers' PIL output to its img2img pipeline does.
    """

    class Inputs(Ports):
        latents: Latent
        vae: VAE
        generator: Generator
        scale: float = Field(2.0, gt=0.0, le=8.0)
        mode: Literal["latent", "image"] = "latent"

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import numpy as np
        import PIL.Image
        import torch
        import torch.nn.functional as F

        from nodegraph.nodes._diffusion import encoder_pixels, vae_scale_factor

        vae, f = i.vae, vae_scale_factor(i.vae)
        height, width = (int(n * f * i.scale) // 8 * 8 for n in i.latents.shape[-2:])
        if height < 8 or width < 8:
            raise ValueError(f"`scale` {i.scale} makes the image smaller than 8 pixels on a side")
        if i.mode == "latent":
            return {"latents": F.interpolate(i.latents, size=(height // f, width // f), mode="bilinear")}
        with torch.no_grad():
            pixels = vae.decode(i.latents.to(vae.dtype) / vae.config.scaling_factor)  # (B, 3, H, W) in ~[-1, 1]
        images = (pixels / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()  # (B, H, W, 3)
        resized = [np.asarray(PIL.Image.fromarray(a).resize((width, height), resample=PIL.Image.LANCZOS))
                   for a in (images * 255).round().astype("uint8")]
        x = torch.from_numpy(np.stack(resized).astype(np.float32) / 255.0).permute(0, 3, 1, 2)  # (B, 3, H', W')
        x = encoder_pixels(x.to(device=ctx.device) * 2 - 1, ctx.dtype)  # as diffusers' image processor: see there
        with torch.no_grad():
            return {"latents": vae.encode(x).sample(generator=i.generator) * vae.config.scaling_factor}
