"""Few-step sampling: how guidance reaches an LCM-distilled UNet (Luo et al. 2023, "Latent Consistency
Models", §4.2: the guidance weight w is an input of the distilled model, not a second forward pass)."""

from __future__ import annotations

import warnings
from typing import Annotated, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Latent, Role, Tensor, UNet


class FewStepsWarning(UserWarning):
    """A setting that a few-step recipe ignores (the run goes on; the setting has no effect)."""


@node("LCMGuidance", version=1)
class LCMGuidance(Node):
    """Route `guidance_scale` the way diffusers' StableDiffusionPipeline does for this UNet.

    A UNet distilled with the guidance scale as input (its config sets `time_cond_proj_dim`, e.g.
    LCM_Dreamshaper_v7) gets the sinusoidal embedding of w = guidance_scale − 1 as `timestep_cond` and runs without
    classifier-free guidance: `cfg_scale` is 1 (one conditional pass), and a negative prompt has no effect (a
    warning says so). Any other UNet (SD1.5 with the LCM-LoRA, TCD, Turbo) gets no `timestep_cond` and
    `cfg_scale` = `guidance_scale`: ordinary CFG, off at ≤ 1 as the LCM-LoRA model cards recommend.
    """

    class Inputs(Ports):
        unet: UNet
        latents: Latent
        guidance_scale: Annotated[float, Role("guidance_scale")] = Field(1.0, ge=0.0, le=100.0)
        negative_prompt: Annotated[str, Role("negative_prompt")] = Field("", description="only checked: a distilled-guidance UNet ignores it")

    class Outputs(Ports):
        cfg_scale: float
        timestep_cond: Optional[Tensor]

    def run(self, i, ctx):
        import torch

        from nodegraph.models.embeddings import guidance_scale_embedding

        dim = getattr(i.unet.config, "time_cond_proj_dim", None)
        if dim is None:
            return {"cfg_scale": i.guidance_scale, "timestep_cond": None}
        if i.negative_prompt:
            warnings.warn(f"{ctx.node_id}: `negative_prompt` is ignored: this UNet was distilled with the guidance "
                          f"scale as an input (time_cond_proj_dim={dim}), so it runs without an unconditional pass, "
                          "as in diffusers. Leave `negative_prompt` empty.", FewStepsWarning, stacklevel=1)
        w = torch.full((i.latents.shape[0],), i.guidance_scale - 1.0)  # (B,)
        cond = guidance_scale_embedding(w, dim).to(device=i.latents.device, dtype=i.latents.dtype)  # (B, dim)
        return {"cfg_scale": 1.0, "timestep_cond": cond}
