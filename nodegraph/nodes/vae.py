"""VAE nodes: latents ↔ images through the AutoencoderKL, with its `scaling_factor` (and `shift_factor`, which
the 16-channel VAEs of Flux, SD3 and Z-Image have: decode z/scale + shift, encode (x − shift)·scale)."""

from __future__ import annotations

from typing import Literal

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, Generator, Image, Latent

TILING = Field("auto", description="exact tiled pass (models/vae_tiling.py: the untiled image within 1/255, less "
                                   "memory): on, off, or auto = when the untiled pass would not fit the run's "
                                   "max_memory (else the free memory); a decode first tries the lean untiled "
                                   "pass (models/vae_lean.py, the same bits)")
TILE_SIZE = Field(256, ge=32, le=4096, multiple_of=8, description="tile side, in output pixels of each stage")


def _tiled(i, ctx, latent_shape) -> bool:
    from nodegraph.memory.vae import should_tile

    return should_tile(i.tiling, i.vae, latent_shape, ctx.device, ctx.mode.max_memory, i.tile_size)


@node("VAEDecode", version=1)
class VAEDecode(Node):
    """Decode latents to images in [0, 1] (float32 on the CPU, ready to save).

    With `force_upcast`, a float16 VAE whose config sets `force_upcast` (SD and SDXL VAEs overflow in float16)
    decodes in float32, as the SDXL pipelines do; other dtypes are left as they are.
    """

    class Inputs(Ports):
        vae: VAE
        latents: Latent
        force_upcast: bool = Field(False, description="decode in float32 when the VAE is float16 and asks for it")
        tiling: Literal["auto", "on", "off"] = TILING
        tile_size: int = TILE_SIZE

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        import copy

        import torch

        vae = i.vae
        if i.force_upcast and vae.dtype == torch.float16 and vae.config.force_upcast:
            vae = copy.deepcopy(vae).float()  # the cached fp16 VAE stays as it is for other users
        z = to_vae_space(i.latents.to(vae.dtype), vae.config)
        with torch.no_grad():
            x = _decode(i, ctx, vae, z)  # (B, 3, H, W) in ~[-1, 1]
        return {"image": (x / 2 + 0.5).clamp(0, 1).float().cpu()}


def _decode(i, ctx, vae, z):
    """The pass memory/vae.py `decode_pass` picks: plain untiled, lean untiled (the same bits in less memory), or
    the exact tiled one."""
    from nodegraph.memory.vae import decode_pass

    kind = decode_pass(i.tiling, vae, tuple(z.shape), ctx.device, ctx.mode.max_memory, i.tile_size)
    if kind == "plain":
        return vae.decode(z)
    from nodegraph.memory.usage import release_free_heap

    if kind == "lean":
        from nodegraph.models.vae_lean import lean_decode

        return lean_decode(vae, z, release_free_heap)
    from nodegraph.models.vae_tiling import tiled_decode

    return tiled_decode(vae, z, i.tile_size, release_free_heap)


@node("VAEEncode", version=1)
class VAEEncode(Node):
    """Encode images in [0, 1] to scaled latents, sampling the posterior with `generator` (img2img).

    The image batch is repeated up to `batch_size` after encoding, as diffusers does for one init image.
    """

    class Inputs(Ports):
        vae: VAE
        image: Image
        generator: Generator
        batch_size: int = Field(1, ge=1, le=64)
        tiling: Literal["auto", "on", "off"] = TILING
        tile_size: int = TILE_SIZE

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch

        from nodegraph.nodes._diffusion import encoder_pixels

        vae = i.vae
        # 2x − 1 in float32 before rounding to the run's dtype, as diffusers' image processor and pipelines do
        x = encoder_pixels(i.image.to(device=ctx.device, dtype=torch.float32) * 2 - 1, ctx.dtype)  # (B, 3, H, W)
        latent_shape = (x.shape[0], 4, x.shape[2] // 8, x.shape[3] // 8)  # as for a decode to this size
        with torch.no_grad():
            if _tiled(i, ctx, latent_shape):
                from nodegraph.models.vae_tiling import tiled_encode

                from nodegraph.memory.usage import release_free_heap

                posterior = tiled_encode(vae, x, i.tile_size, release_free_heap)
            else:
                posterior = vae.encode(x)
            latents = from_vae_space(posterior.sample(generator=i.generator), vae.config)
        if i.batch_size % latents.shape[0]:
            raise ValueError(f"`batch_size` {i.batch_size} is not a multiple of the {latents.shape[0]} images given")
        return {"latents": torch.cat([latents] * (i.batch_size // latents.shape[0]))}


def to_vae_space(latents, config):
    """Diffusion latents → the decoder's input: / scaling_factor, + shift_factor where the VAE has one."""
    z = latents / config.scaling_factor
    return z if config.shift_factor is None else z + config.shift_factor


def from_vae_space(sample, config):
    """A posterior sample → diffusion latents: − shift_factor where the VAE has one, · scaling_factor."""
    return (sample if config.shift_factor is None else sample - config.shift_factor) * config.scaling_factor
