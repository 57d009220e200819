"""Inpainting nodes: read an image and its mask, prepare the latents as diffusers' StableDiffusionInpaintPipeline
does, and, for ordinary 4-channel UNets, put the known region back (re-noised) after every step.

9-channel inpainting UNets read [latents, mask, masked-image latents] concatenated on channels; 4-channel
UNets denoise the whole image and keep the region outside the mask on the init image's noising trajectory.
"""

from __future__ import annotations

from typing import Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, FilePath, Generator, Image, Latent, Scheduler, Tensor, Timesteps, UNet


@node("LoadInpaintImages", version=1)
class LoadInpaintImages(Node):
    """Read the image to edit and its mask (white = repaint, black = keep) as diffusers' processors do.

    Both are Lanczos-resized to `height` × `width` (default: the image's size rounded down to a multiple of
    8). The image becomes RGB in [0, 1]; the mask grayscale, binarised at 0.5 (≥ 128 of 255 → 1). A mask
    whose size differs from the image's is refused: stretching it would move the edit.
    """

    pure = False  # the files may change between runs

    class Inputs(Ports):
        image: FilePath = Field(min_length=1, description="image file to edit")
        mask: FilePath = Field(min_length=1, description="mask file: white repaints, black keeps")
        height: Optional[int] = Field(None, gt=0, le=8192)
        width: Optional[int] = Field(None, gt=0, le=8192)

    class Outputs(Ports):
        image: Image
        mask: Image
        height: int
        width: int

    def run(self, i, ctx):
        import numpy as np
        import PIL.Image
        import torch

        image, mask = _read(i.image, "image"), _read(i.mask, "mask")
        if image.size != mask.size:
            raise ValueError(f"`mask` {i.mask!r} is {mask.width}×{mask.height} but `image` {i.image!r} is "
                             f"{image.width}×{image.height}: save the mask at the image's size")
        width, height = i.width or image.width, i.height or image.height
        width, height = width - width % 8, height - height % 8
        if width == 0 or height == 0:
            raise ValueError(f"`image` {i.image!r} is smaller than 8 pixels on a side")
        if (width, height) != image.size:
            # the mask is resized in its own mode, then made grayscale (diffusers' mask processor)
            image = image.resize((width, height), resample=PIL.Image.LANCZOS)
            mask = mask.resize((width, height), resample=PIL.Image.LANCZOS)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
        gray = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0  # (H, W)
        binary = (gray >= 0.5).astype(np.float32)
        return {"image": torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous(),  # (1, 3, H, W)
                "mask": torch.from_numpy(binary)[None, None].contiguous(),  # (1, 1, H, W)
                "height": height, "width": width}


def _read(path: str, name: str):
    from nodegraph.nodes.image import read_image  # the pixel limit is checked before decoding

    return read_image(path, name)


@node("InpaintLatents", version=1)
class InpaintLatents(Node):
    """The starting latents, the noise, and the conditioning of an inpainting run, drawn in diffusers' order.

    `strength` 1 starts from pure noise; below 1 the init image's latents are noised to `start` (the first
    kept timestep). 4-channel UNets also get the clean image latents (for the per-step blend); every UNet gets
    the mask at latent size and the latents of the image with the masked region set to 0 (mid-grey).
    `force_upcast` encodes with a float32 copy of a lower-precision VAE whose config asks for it, as diffusers'
    SDXL pipelines do.
    """

    class Inputs(Ports):
        unet: UNet
        vae: VAE
        scheduler: Scheduler
        image: Image
        mask: Image
        generator: Generator
        start: Tensor
        strength: float = Field(1.0, gt=0.0, le=1.0)
        batch_size: int = Field(1, ge=1, le=64)
        force_upcast: bool = Field(False, description="encode in float32 when the VAE's config asks (SDXL)")

    class Outputs(Ports):
        latents: Latent
        noise: Latent
        image_latents: Optional[Latent] = None  # 4-channel UNets, or strength < 1
        mask: Latent
        masked_image_latents: Latent

    def run(self, i, ctx):
        import copy

        import torch
        import torch.nn.functional as F

        from nodegraph.nodes._diffusion import encoder_pixels, randn, vae_scale_factor

        channels = i.unet.config.in_channels
        if channels not in (4, 9):
            raise ValueError(f"`model`'s UNet takes {channels} input channels; inpainting needs an ordinary "
                             "(4) or an inpainting (9) Stable Diffusion UNet")
        B, f, vae = i.batch_size, vae_scale_factor(i.vae), i.vae
        image = i.image.to(device=ctx.device) * 2 - 1  # (1, 3, H, W) in [-1, 1], float32 like diffusers' processor
        H, W = image.shape[-2:]
        shape = (B, vae.config.latent_channels, H // f, W // f)
        encoder = vae
        if i.force_upcast and vae.config.force_upcast and vae.dtype != torch.float32:
            encoder = copy.deepcopy(vae).float()  # the cached VAE stays as it is for other users

        def encode(pixels):  # pixels: float32; rounded to the run's dtype first, as the pipelines do
            with torch.no_grad():
                posterior = encoder.encode(encoder_pixels(pixels, ctx.dtype).to(encoder.dtype))
                latents = posterior.sample(generator=i.generator).to(ctx.dtype) * vae.config.scaling_factor
            return latents.repeat(B // latents.shape[0], 1, 1, 1)  # (B, 4, h, w)

        full_strength = i.strength == 1.0
        image_latents = encode(image) if channels == 4 or not full_strength else None
        noise = randn(shape, i.generator, ctx)
        if full_strength:
            latents = noise * i.scheduler.init_noise_sigma
        else:
            latents = i.scheduler.add_noise(image_latents, noise, i.start.reshape(-1)[:1].repeat(B))
        mask = i.mask.to(device=ctx.device, dtype=ctx.dtype)  # (1, 1, H, W) in {0, 1}
        masked_image_latents = encode(image * (mask < 0.5))  # the repainted region is 0 (mid-grey)
        small_mask = F.interpolate(mask, size=(H // f, W // f)).repeat(B, 1, 1, 1)  # nearest: (B, 1, h, w)
        return {"latents": latents, "noise": noise, "image_latents": image_latents, "mask": small_mask,
                "masked_image_latents": masked_image_latents}


@node("InpaintModelInput", version=1)
class InpaintModelInput(Node):
    """For a 9-channel inpainting UNet, concatenate [scaled latents, mask, masked-image latents] on channels;
    for a 4-channel UNet pass the latents through."""

    class Inputs(Ports):
        unet: UNet
        latents: Latent
        mask: Latent
        masked_image_latents: Latent

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch

        if i.unet.config.in_channels == 4:
            return {"latents": i.latents}
        return {"latents": torch.cat([i.latents, i.mask, i.masked_image_latents], dim=1)}  # (B, 9, h, w)


@node("InpaintBlend", version=1)
class InpaintBlend(Node):
    """For a 4-channel UNet, after step `index`: keep the denoised latents inside the mask and, outside it, the
    init image's latents noised to the next timestep with the run's initial noise (the clean latents after the
    last step). 9-channel UNets inpaint by themselves: their latents pass through."""

    class Inputs(Ports):
        unet: UNet
        scheduler: Scheduler
        latents: Latent
        image_latents: Optional[Latent] = None
        noise: Latent
        mask: Latent
        index: int = Field(ge=0)
        timesteps: Timesteps

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        if i.unet.config.in_channels != 4:
            return {"latents": i.latents}
        known = i.image_latents
        if i.index < len(i.timesteps) - 1:
            known = i.scheduler.add_noise(known, i.noise, i.timesteps[i.index + 1].reshape(1))
        return {"latents": (1 - i.mask) * known + i.mask * i.latents}


@node("RefuseInpaintingUNet", version=1)
class RefuseInpaintingUNet(Node):
    """Pass `unet` through, refusing a 9-channel inpainting UNet with a pointer to graphs/inpaint.yaml (SDXL:
    graphs/sdxl_inpaint.yaml): a text-to-image graph has no image or mask to give it."""

    class Inputs(Ports):
        unet: UNet

    class Outputs(Ports):
        unet: UNet

    def run(self, i, ctx):
        channels = getattr(i.unet.config, "in_channels", 4)
        if channels == 9:
            sdxl = getattr(i.unet.config, "addition_embed_type", None) == "text_time"
            raise ValueError("`model` is an inpainting checkpoint (its UNet takes 9 channels: latents, mask and "
                             f"masked image): run it with graphs/{'sdxl_inpaint' if sdxl else 'inpaint'}.yaml and give "
                             "it an `image` and a `mask`")
        return {"unet": i.unet}
