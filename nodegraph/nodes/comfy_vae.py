"""ComfyUI's VAEEncode as a node: the posterior's mode (no sampling), scaled for the model."""

from __future__ import annotations

from nodegraph.core import Node, Ports, node
from nodegraph.core.types import VAE, Image, Latent


@node("ComfyVAEEncode", version=1)
class ComfyVAEEncode(Node):
    """Encode images in [0, 1] to model-space latents as ComfyUI does: the pixels are center-cropped to a multiple
    of 8, and the latent is the posterior's mode (ComfyUI's DiagonalGaussianRegularizer does not sample) times
    the VAE's scaling factor (ComfyUI's `process_latent_in`)."""

    class Inputs(Ports):
        vae: VAE
        image: Image

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch

        x = i.image  # (B, 3, H, W) in [0, 1]
        height, width = x.shape[-2] // 8 * 8, x.shape[-1] // 8 * 8
        if height == 0 or width == 0:
            raise ValueError(f"`image` is {x.shape[-1]}×{x.shape[-2]} pixels; VAEEncode needs at least 8×8")
        top, left = (x.shape[-2] % 8) // 2, (x.shape[-1] % 8) // 2
        x = x[..., top:top + height, left:left + width]
        vae = i.vae
        with torch.no_grad():
            mode = vae.encode(x.to(device=ctx.device, dtype=vae.dtype) * 2 - 1).mode()
        return {"latents": (mode * vae.config.scaling_factor).to(ctx.dtype)}
