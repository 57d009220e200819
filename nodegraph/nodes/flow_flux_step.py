"""Flux.1's denoising nodes (diffusers 0.42.1, FluxPipeline.__call__ / prepare_latents / _pack_latents /
_unpack_latents / _prepare_latent_image_ids): the starting noise, the 2×2 latent packing and its inverse, the RoPE
position ids, one transformer call (timestep σ, dev's guidance), true CFG, and the pipeline's sigmas. The latents
carried between steps stay unpacked (B, C, h, w), so the scheduler step, previews and the VAE see ordinary
latents; the Euler step is elementwise, so stepping packed or unpacked latents gives the same numbers."""

from __future__ import annotations

from typing import Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, Embeddings, Generator, Latent, Tensor, Transformer


@node("FluxLatent", version=1)
class FluxLatent(Node):
    """Gaussian starting latents in the run's dtype from the CPU generator, one draw for the batch (as FluxPipeline
    draws them in the text embeddings' dtype): (batch_size, transformer in_channels / 4, 2·(height // 2f),
    2·(width // 2f)) for a VAE of factor f. Sizes must be multiples of 2f (16 for Flux's VAE)."""

    class Inputs(Ports):
        generator: Generator
        transformer: Transformer
        vae: VAE
        batch_size: int = Field(1, ge=1, le=64)
        height: int = Field(1024, gt=0, le=8192, multiple_of=16, description="image height in pixels")
        width: int = Field(1024, gt=0, le=8192, multiple_of=16, description="image width in pixels")

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch

        from nodegraph.nodes._diffusion import check_multiple, vae_scale_factor

        step = 2 * vae_scale_factor(i.vae)  # one packed token covers 2×2 latents
        check_multiple(step, height=i.height, width=i.width)
        channels = i.transformer.config.in_channels // 4
        shape = (i.batch_size, channels, 2 * (i.height // step), 2 * (i.width // step))
        return {"latents": torch.randn(shape, generator=i.generator, dtype=ctx.dtype).to(ctx.device)}


@node("FluxSize", version=1)
class FluxSize(Node):
    """The image size of a Flux run, checked when the graph is validated: multiples of 16 (8 pixels a latent, 2×2
    latents a token). Passes `height` and `width` on (img2img resizes its init image to them)."""

    class Inputs(Ports):
        height: int = Field(1024, gt=0, le=8192, multiple_of=16, description="image height in pixels")
        width: int = Field(1024, gt=0, le=8192, multiple_of=16, description="image width in pixels")

    class Outputs(Ports):
        height: int
        width: int

    def run(self, i, ctx):
        return {"height": i.height, "width": i.width}


@node("FluxSigmas", version=1)
class FluxSigmas(Node):
    """The sigmas FluxPipeline passes to the scheduler: `steps` values evenly from 1 down to 1/steps, spaced in
    float64 (numpy's linspace; the scheduler rounds them to float32, then shifts them)."""

    class Inputs(Ports):
        steps: int = Field(28, ge=1, le=1000, description="number of denoising steps")

    class Outputs(Ports):
        sigmas: list[float]

    def run(self, i, ctx):
        import numpy as np

        return {"sigmas": np.linspace(1.0, 1 / i.steps, i.steps).tolist()}


@node("FluxPackLatents", version=1)
class FluxPackLatents(Node):
    """Latents (B, C, h, w) → Flux's tokens (B, h/2 · w/2, 4C): each 2×2 patch one token, features ordered
    (channel, dy, dx), tokens row by row."""

    class Inputs(Ports):
        latents: Latent

    class Outputs(Ports):
        packed: Tensor

    def run(self, i, ctx):
        return {"packed": pack(i.latents)}


@node("FluxUnpackLatents", version=1)
class FluxUnpackLatents(Node):
    """Flux's tokens (B, h/2 · w/2, 4C) → latents (B, C, h, w), the inverse of FluxPackLatents; `like` gives h, w."""

    class Inputs(Ports):
        packed: Tensor
        like: Latent

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        return {"latents": unpack(i.packed, *i.like.shape[-2:])}


def pack(x):
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # (B, h/2, w/2, C, 2, 2)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens, h: int, w: int):
    b, _, features = tokens.shape
    x = tokens.view(b, h // 2, w // 2, features // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)  # (B, C, h/2, 2, w/2, 2)
    return x.reshape(b, features // 4, h, w)


@node("FluxPositionIds", version=1)
class FluxPositionIds(Node):
    """RoPE positions of Flux's joint sequence: text tokens all (0, 0, 0); the image token of packed row r and
    column c is (0, r, c). In the embeddings' dtype, as FluxPipeline makes them."""

    class Inputs(Ports):
        latents: Latent
        embeddings: Embeddings

    class Outputs(Ports):
        img_ids: Tensor
        txt_ids: Tensor

    def run(self, i, ctx):
        import torch

        h, w = (n // 2 for n in i.latents.shape[-2:])
        ids = torch.zeros(h, w, 3)
        ids[..., 1] += torch.arange(h)[:, None]
        ids[..., 2] += torch.arange(w)[None, :]
        like = i.embeddings
        return {"img_ids": ids.reshape(h * w, 3).to(device=like.device, dtype=like.dtype),  # (S_img, 3)
                "txt_ids": torch.zeros(like.shape[1], 3, device=like.device, dtype=like.dtype)}  # (S_txt, 3)


@node("FluxTransformerStep", version=1)
class FluxTransformerStep(Node):
    """One Flux transformer call at scheduler timestep `t` on packed latents: the velocity (B, S_img, features) in
    the model's dtype. The timestep is cast to the latents' dtype and divided by 1000 (σ), as FluxPipeline does;
    `guidance` reaches dev's guidance embedding (float32, one per image) and is ignored by schnell, which has none.
    Without embeddings (a negative prompt left unencoded while true CFG is off) nothing is computed: no prediction."""

    class Inputs(Ports):
        transformer: Transformer
        packed: Tensor
        t: Tensor
        embeddings: Optional[Embeddings] = Field(None, description="T5's embeddings (T5TextEncode)")
        pooled: Optional[Embeddings] = Field(None, description="CLIP's pooled embedding (CLIPPooledEncode)")
        img_ids: Tensor
        txt_ids: Tensor
        guidance: float = Field(3.5, ge=0.0, le=100.0, description="dev's distilled guidance")

    class Outputs(Ports):
        prediction: Tensor

    def run(self, i, ctx):
        import torch

        if i.embeddings is None and i.pooled is None:
            return {"prediction": None}
        if i.embeddings is None or i.pooled is None:
            raise ValueError("FluxTransformerStep needs both `embeddings` (T5) and `pooled` (CLIP), or neither")
        model, x = i.transformer, i.packed  # x: (B, S_img, features)
        b = x.shape[0]
        timestep = i.t.reshape(()).expand(b).to(x.dtype)  # (B,)
        guidance = None
        if model.config.guidance_embeds:
            guidance = torch.full([1], i.guidance, dtype=torch.float32, device=x.device).expand(b)
        with torch.no_grad():
            out = model(x.to(model.dtype), i.embeddings, i.pooled, timestep / 1000, i.img_ids, i.txt_ids, guidance)
        return {"prediction": out}


@node("FluxTrueCFG", version=1)
class FluxTrueCFG(Node):
    """FluxPipeline's true CFG from two separate calls: neg + s·(pos − neg). Without a negative prediction (true
    CFG off) the positive passes through."""

    class Inputs(Ports):
        prediction: Tensor
        negative: Optional[Tensor] = Field(None, description="the negative prompt's prediction")
        true_cfg_scale: float = Field(1.0, ge=0.0, le=100.0, description="true CFG scale")

    class Outputs(Ports):
        noise_pred: Tensor

    def run(self, i, ctx):
        if i.prediction is None:
            raise ValueError("FluxTrueCFG has no `prediction`: the prompt's embeddings were not given")
        if i.negative is None:
            return {"noise_pred": i.prediction}
        return {"noise_pred": i.negative + i.true_cfg_scale * (i.prediction - i.negative)}
