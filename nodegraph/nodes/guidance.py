"""Classifier-free guidance (Ho & Salimans, 2022): push the prediction away from the unconditional one."""

from __future__ import annotations

from typing import Annotated

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Role, Tensor


@node("CFGCombine", version=1)
class CFGCombine(Node):
    """Combine a CFG batch [unconditional, conditional] into `u + g·(c − u)`.

    With `guidance_scale` ≤ 1 the batch holds only the conditional prediction (see CFGEmbeddings) and is
    passed through.

    `guidance_rescale` φ > 0 rescales the guided prediction towards the conditional one's standard deviation,
    which keeps images from over-exposing with zero-terminal-SNR schedules: Lin et al. (2023), "Common
    Diffusion Noise Schedules and Sample Steps are Flawed", §3.4, eq. 15–16 (diffusers' `rescale_noise_cfg`).
    """

    class Inputs(Ports):
        noise_pred: Tensor
        guidance_scale: Annotated[float, Role("guidance_scale")] = Field(7.5, ge=0.0, le=100.0)
        guidance_rescale: float = Field(0.0, ge=0.0, le=1.0, description="φ: 0 = plain CFG, 0.7 is the paper's")

    class Outputs(Ports):
        noise_pred: Tensor

    def run(self, i, ctx):
        if i.guidance_scale <= 1.0:
            return {"noise_pred": i.noise_pred}
        uncond, cond = i.noise_pred.chunk(2)
        guided = uncond + i.guidance_scale * (cond - uncond)  # (B, C, h, w)
        if i.guidance_rescale > 0.0:
            dims = list(range(1, cond.ndim))
            rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
            guided = i.guidance_rescale * rescaled + (1 - i.guidance_rescale) * guided
        return {"noise_pred": guided}
