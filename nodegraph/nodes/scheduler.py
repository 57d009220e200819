"""Scheduler nodes: timesteps, input scaling, one denoising step, and forward noising (img2img)."""

from __future__ import annotations

from typing import Annotated, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Generator, Latent, Role, Scheduler, Tensor, Timesteps


@node("SchedulerSetTimesteps", version=1)
class SchedulerSetTimesteps(Node):
    """Set the number of inference steps; outputs the scheduler (now reset) and the timesteps to loop over.

    `strength` < 1 keeps only the last `strength` share of the steps (img2img, as in diffusers'
    `get_timesteps`); `start` is the first kept timestep, the noise level the init latents are raised to.
    """

    class Inputs(Ports):
        scheduler: Scheduler
        steps: Annotated[int, Role("steps")] = Field(25, ge=1, le=1000, description="number of denoising steps")
        strength: Annotated[float, Role("strength")] = Field(1.0, gt=0.0, le=1.0, description="share of the "
                                                                                      "schedule to run (img2img)")
        sigmas: Optional[list[float]] = Field(None, description="flow-matching schedulers: the sigmas the pipeline "
                                                                "passes, one per step (FlowSigmas)")
        mu: Optional[float] = Field(None, description="flow-matching schedulers: the resolution-dependent shift "
                                                      "(FlowShift); used where the config sets dynamic shifting")

    class Outputs(Ports):
        scheduler: Scheduler
        timesteps: Timesteps
        start: Tensor

    def run(self, i, ctx):
        s = i.scheduler
        flow = {k: v for k, v in (("sigmas", i.sigmas), ("mu", i.mu)) if v is not None}
        if flow and not getattr(s, "flow_matching", False):
            raise ValueError(f"`sigmas` and `mu` are for flow-matching schedulers; {type(s).__name__} takes `steps` "
                             "alone")
        s.set_timesteps(i.steps, device=ctx.device, **flow)
        timesteps = s.timesteps
        if i.strength < 1.0:
            kept = min(int(i.steps * i.strength), i.steps)
            begin = max(i.steps - kept, 0) * s.order
            if getattr(s, "flow_matching", False):  # diffusers' flow img2img pipelines round after subtracting
                begin = int(max(i.steps - min(i.steps * i.strength, i.steps), 0))
            timesteps = timesteps[begin:]
            s.set_begin_index(begin)
            if len(timesteps) == 0:
                raise ValueError(f"`strength` {i.strength} with `steps` {i.steps} leaves no step to run; "
                                 "raise `strength` or `steps`")
        return {"scheduler": s, "timesteps": timesteps, "start": timesteps[:1]}


@node("ScaleModelInput", version=1)
class ScaleModelInput(Node):
    """Scale latents for the model input at timestep `t` (σ-based schedulers divide by √(σ² + 1))."""

    class Inputs(Ports):
        scheduler: Scheduler
        latents: Latent
        t: Tensor

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        return {"latents": i.scheduler.scale_model_input(i.latents, i.t)}


@node("SchedulerStep", version=1)
class SchedulerStep(Node):
    """One scheduler step from `t` to the previous timestep; stochastic schedulers draw from `generator`."""

    class Inputs(Ports):
        scheduler: Scheduler
        noise_pred: Tensor
        t: Tensor
        latents: Latent
        generator: Optional[Generator] = None
        eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM's η: 0 is deterministic")

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        return {"latents": i.scheduler.step(i.noise_pred, i.t, i.latents, generator=i.generator, eta=i.eta)}


@node("AddNoise", version=1)
class AddNoise(Node):
    """Noise clean latents up to timestep `t` with fresh noise from `generator` (img2img's starting point)."""

    class Inputs(Ports):
        scheduler: Scheduler
        latents: Latent
        t: Tensor
        generator: Generator

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        from nodegraph.nodes._diffusion import randn

        x = i.latents
        noise = randn(tuple(x.shape), i.generator, ctx)
        t = i.t.reshape(-1)[:1].repeat(x.shape[0])  # one timestep per image
        return {"latents": i.scheduler.add_noise(x, noise, t)}
