"""Schedule nodes of the flow-matching families: the sigmas a pipeline passes to `set_timesteps`, and the
resolution-dependent shift `mu`. Both feed SchedulerSetTimesteps (`sigmas`, `mu`)."""

from __future__ import annotations

from typing import Annotated

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Latent, Role, Scheduler


@node("FlowSigmas", version=1)
class FlowSigmas(Node):
    """The sigmas Flux and Z-Image pass to the scheduler: `steps` values evenly from 1 down to 1/steps, in
    float32 (torch.linspace(1, 1/n, n)); the scheduler then shifts them."""

    class Inputs(Ports):
        steps: Annotated[int, Role("steps")] = Field(8, ge=1, le=1000, description="number of denoising steps")

    class Outputs(Ports):
        sigmas: list[float]

    def run(self, i, ctx):
        import torch

        return {"sigmas": torch.linspace(1.0, 1 / i.steps, i.steps).tolist()}


@node("FlowShift", version=1)
class FlowShift(Node):
    """`mu` of the dynamic shift for these latents: the image token count (latent h/patch · w/patch) placed on
    the scheduler config's line from (base_image_seq_len, base_shift) to (max_image_seq_len, max_shift)."""

    class Inputs(Ports):
        scheduler: Scheduler
        latents: Latent
        patch_size: int = Field(2, ge=1, le=16, description="latent pixels per token side (2 for Z-Image, Flux)")

    class Outputs(Ports):
        mu: float

    def run(self, i, ctx):
        if not hasattr(i.scheduler, "mu"):
            raise ValueError(f"FlowShift needs a flow-matching scheduler; got {type(i.scheduler).__name__}")
        h, w = i.latents.shape[-2:]
        return {"mu": float(i.scheduler.mu((h // i.patch_size) * (w // i.patch_size)))}
