"""Z-Image's denoising nodes (diffusers 0.42.1, ZImagePipeline.__call__): the float32 starting noise, one
transformer call per step (timestep 1 − σ, output negated into the flow velocity) and Z-Image's own CFG
(pos + g·(pos − neg), with `cfg_normalization` and `cfg_truncation`). The scheduler step is SchedulerStep."""

from __future__ import annotations

from typing import Annotated, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, Embeddings, Generator, Latent, Role, Tensor, Transformer

TRUNCATION_HELP = "CFG is switched off on steps whose 1 − t/1000 exceeds this (1 = never)"


@node("ZImageLatent", version=1)
class ZImageLatent(Node):
    """Gaussian starting latents, float32 whatever the run's dtype (as ZImagePipeline draws them), from the CPU
    generator: shape (batch_size, transformer channels, 2·(height // 2f), 2·(width // 2f)) for a VAE of factor f.

    Without `vae`, f is `vae_scale_factor` (ZImageCheckpoint reads it from the VAE's config): the graph then loads
    its VAE after the denoising loop, never beside the transformer."""

    class Inputs(Ports):
        generator: Generator
        transformer: Transformer
        vae: Optional[VAE] = None
        vae_scale_factor: int = Field(8, ge=1, le=64, description="the VAE's downscale factor, used without `vae`")
        batch_size: int = Field(1, ge=1, le=64)
        height: int = Field(1024, gt=0, le=8192, multiple_of=16, description="image height in pixels")
        width: int = Field(1024, gt=0, le=8192, multiple_of=16, description="image width in pixels")

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch

        from nodegraph.nodes._diffusion import check_multiple, vae_scale_factor

        step = 2 * (vae_scale_factor(i.vae) if i.vae is not None else i.vae_scale_factor)  # a token: 2×2 latents
        check_multiple(step, height=i.height, width=i.width)
        shape = (i.batch_size, i.transformer.config.in_channels, 2 * (i.height // step), 2 * (i.width // step))
        return {"latents": torch.randn(shape, generator=i.generator, dtype=torch.float32).to(ctx.device)}


@node("ZImageGuidanceOff", version=1)
class ZImageGuidanceOff(Node):
    """Whether Z-Image's CFG is off for the whole run (`guidance_scale` 0): then the negative prompt is not
    encoded at all, as ZImagePipeline skips it (feed `off` to that TextEncode's `skip`)."""

    class Inputs(Ports):
        guidance_scale: float = Field(0.0, ge=0.0, le=100.0, description="Z-Image CFG scale; 0 = off")

    class Outputs(Ports):
        off: bool

    def run(self, i, ctx):
        return {"off": not i.guidance_scale > 0}


@node("ZImageTransformerStep", version=1)
class ZImageTransformerStep(Node):
    """One transformer call at scheduler timestep `t`: the velocity −model(x, 1 − t/1000, captions) in float32.

    When guidance is on for this step (`guidance_scale` > 0 and `t` inside `cfg_truncation`), positives and
    negatives go through in one call and `prediction` holds 2B items [positives, negatives] for ZImageCFG.
    """

    class Inputs(Ports):
        transformer: Transformer
        latents: Latent
        t: Tensor
        embeddings: Embeddings
        negative: Optional[Annotated[Embeddings, Role("negative")]] = Field(None, description="the negative "
                                                                                  "prompt's embeddings (CFG)")
        guidance_scale: Annotated[float, Role("guidance_scale")] = Field(0.0, ge=0.0, le=100.0,
                                                                         description="Z-Image CFG scale; 0 = off")
        cfg_truncation: float = Field(1.0, ge=0.0, le=1.0, description=TRUNCATION_HELP)

    class Outputs(Ports):
        prediction: Tensor

    def run(self, i, ctx):
        import torch

        model, x = i.transformer, i.latents  # x: (B, C, h, w) float32
        b = x.shape[0]
        t = i.t.reshape(()).to(torch.float32)
        timestep = (1000 - t.expand(b)) / 1000  # (B,): 0 = pure noise
        guided = guided_step(t, i.guidance_scale, i.cfg_truncation)
        captions = list(i.embeddings.unbind(0))
        x = x.to(model.dtype)
        if guided:
            if i.negative is None:
                raise ValueError("guidance is on but no `negative` embeddings were given; encode the negative "
                                 "prompt (\"\" by default) and pass it")
            x, timestep = x.repeat(2, 1, 1, 1), timestep.repeat(2)
            captions += list(i.negative.unbind(0))
        with torch.no_grad():
            out = model(list(x.unsqueeze(2).unbind(0)), timestep, captions)  # [(C, 1, h, w)]
        return {"prediction": -torch.stack([o.float() for o in out]).squeeze(2)}  # (B or 2B, C, h, w)


def guided_step(t, guidance_scale: float, cfg_truncation: float) -> bool:
    """Whether CFG runs at timestep `t`: on with a positive scale, off where (1000 − t)/1000 > cfg_truncation."""
    import torch

    t_norm = ((1000 - t.to(torch.float32)) / 1000).item()
    return guidance_scale > 0 and not t_norm > cfg_truncation


@node("ZImageCFG", version=1)
class ZImageCFG(Node):
    """Z-Image's classifier-free guidance on a [positives, negatives] prediction: pos + g·(pos − neg) per image in
    float32 (not neg + g·(pos − neg)). `cfg_normalization` > 0 caps each guided image's norm at that multiple of
    its positive's. A prediction of B items (guidance off at this step) passes through."""

    class Inputs(Ports):
        prediction: Tensor
        latents: Latent
        guidance_scale: float = Field(0.0, ge=0.0, le=100.0, description="Z-Image CFG scale; 0 = off")
        cfg_normalization: float = Field(0.0, ge=0.0, le=100.0, description="cap on the guided norm as a "
                                                                           "multiple of the positive's; 0 = off")

    class Outputs(Ports):
        noise_pred: Tensor

    def run(self, i, ctx):
        import torch

        b, pred = i.latents.shape[0], i.prediction
        if pred.shape[0] == b:
            return {"noise_pred": pred}
        pos, neg = pred[:b], pred[b:]
        guided = []
        for j in range(b):  # (C, h, w) each, float32
            p = pos[j] + i.guidance_scale * (pos[j] - neg[j])
            if i.cfg_normalization > 0:
                limit = torch.linalg.vector_norm(pos[j]) * i.cfg_normalization
                norm = torch.linalg.vector_norm(p)
                if norm > limit:
                    p = p * (limit / norm)
            guided.append(p)
        return {"noise_pred": torch.stack(guided)}
