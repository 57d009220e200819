"""Latent nodes: the seeded generator and the initial noise."""

from __future__ import annotations

from typing import Annotated, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, Generator, Latent, Role, Scheduler, UNet


@node("Seed", version=1)
class Seed(Node):
    """A CPU `torch.Generator` seeded with `seed`: one per run, feeding every random draw in diffusers' order."""

    class Inputs(Ports):
        seed: Annotated[int, Role("seed")] = Field(0, ge=0, le=2**63 - 1)

    class Outputs(Ports):
        generator: Generator

    def run(self, i, ctx):
        import torch

        return {"generator": torch.Generator("cpu").manual_seed(i.seed)}


@node("RandomLatent", version=1)
class RandomLatent(Node):
    """Gaussian latents drawn on the CPU generator, so a seed gives the same image on every device.

    Shape (batch_size, unet.in_channels, height/f, width/f) with f the VAE's scale factor (1 without a VAE:
    pixel-space models such as DDPM). Height and width default to the UNet's `sample_size` × f. With a
    `scheduler` (after SchedulerSetTimesteps) the noise is scaled by its `init_noise_sigma`.
    """

    class Inputs(Ports):
        generator: Generator
        unet: UNet
        vae: Optional[VAE] = None
        scheduler: Optional[Scheduler] = None
        batch_size: int = Field(1, ge=1, le=64)
        height: Optional[int] = Field(None, gt=0, le=8192, multiple_of=8, description="image height in pixels")
        width: Optional[int] = Field(None, gt=0, le=8192, multiple_of=8, description="image width in pixels")

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        from nodegraph.nodes._diffusion import randn, vae_scale_factor

        factor = 1 if i.vae is None else vae_scale_factor(i.vae)
        default = i.unet.config.sample_size * factor
        height, width = i.height or default, i.width or default
        for name, size in (("height", height), ("width", width)):
            if size % factor:
                raise ValueError(f"`{name}` {size} must be a multiple of {factor} for this model; "
                                 f"try {size // factor * factor or factor}")
        shape = (i.batch_size, i.unet.config.in_channels, height // factor, width // factor)
        latents = randn(shape, i.generator, ctx)
        if i.scheduler is not None:
            latents = latents * i.scheduler.init_noise_sigma
        return {"latents": latents}
