"""ControlNet nodes: load a ControlNet, attach it (with its image, strength and step range) to a control chain,
and run the UNet step with every ControlNet of the chain, as diffusers' ControlNet pipelines do."""

from __future__ import annotations

from typing import Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import (Control, ControlNet, Embeddings, Image, Latent, ModelSource, Tensor, Timesteps,
                                  UNet)


@node("LoadControlNet", version=1)
class LoadControlNet(Node):
    """Load a ControlNet: a diffusers folder or hub repo (config.json and its weights), or one file in the
    original layout (`control_model.*` keys, e.g. control_v11p_sd15_canny.pth converted to .safetensors)."""

    class Inputs(Ports):
        model: ModelSource = Field(min_length=1, description="ControlNet folder, hub repo id (org/name) or single file")
        config: Optional[ModelSource] = Field(None, description="single files: a diffusers ControlNet folder whose "
                                                        "config.json replaces the inferred one")
        revision: Optional[str] = Field(None, description="hub revision (branch, tag or commit)")
        variant: Optional[str] = Field(None, description="weights variant, e.g. fp16")
        allow_pickle: bool = Field(False, description="allow .bin (pickle) weights; loaded with weights_only=True")

    class Outputs(Ports):
        controlnet: ControlNet

    @classmethod
    def model_reads(cls, known):  # the plan's memory estimate and the read-ahead see the ControlNet's files
        from nodegraph.nodes.loaders import checkpoint_reads

        return checkpoint_reads(known, "controlnet")

    def run(self, i, ctx):
        from nodegraph.models.controlnet import load_controlnet
        from nodegraph.nodes.loaders import get_or_load_model

        key = ("controlnet", i.model, i.revision, i.variant, i.config, str(ctx.dtype), str(ctx.device))
        return {"controlnet": get_or_load_model(ctx, key, lambda: load_controlnet(  # fast: prepared as the UNet is
            i.model, dtype=ctx.dtype, device=ctx.device, revision=i.revision, variant=i.variant,
            allow_pickle=i.allow_pickle, config=i.config or None))}


@node("ControlRange", version=1)
class ControlRange(Node):
    """Check a ControlNet's step range, [`start`, `end`) as shares of the schedule, and pass it on. `start` ≥
    `end` is refused when the graph is validated (literals, graph-input values), else before any model loads."""

    class Inputs(Ports):
        start: float = Field(0.0, ge=0.0, le=1.0)
        end: float = Field(1.0, ge=0.0, le=1.0)

    class Outputs(Ports):
        start: float
        end: float

    @classmethod
    def check_inputs(cls, known):
        from nodegraph.nodes._control import range_problem

        return range_problem(known)

    def run(self, i, ctx):
        from nodegraph.nodes._control import check_range

        check_range(i.start, i.end)
        return {"start": i.start, "end": i.end}


@node("ApplyControlNet", version=1)
class ApplyControlNet(Node):
    """Add a ControlNet to a control chain: its control image (RGB in [0, 1], used as given), `strength`
    (diffusers' `controlnet_conditioning_scale`), and the share of the schedule it acts on, [`start`, `end`)
    (`control_guidance_start`/`_end`). Chained ControlNets add their residuals up, as MultiControlNet does.
    `guess_mode` is diffusers' `guess_mode=True` for this ControlNet: with guidance it sees only the conditional
    half of the batch (the unconditional half gets no residual), and its residuals are weighted from 0.1 at the
    shallowest skip to 1 at the mid block, so it steers even with an empty prompt.

    `unet` is checked against the ControlNet (text width, SDXL or not, block widths) before any step runs.
    Also outputs the control image's size, the default size of the generated image.
    """

    keeps_models = True  # its Control value holds the ControlNet: the memory estimate keeps it held as long

    class Inputs(Ports):
        controlnet: ControlNet
        image: Image
        unet: Optional[UNet] = None
        control: Optional[Control] = Field(None, description="the chain so far (empty = start a new one)")
        strength: float = Field(1.0, ge=0.0, le=10.0)
        start: float = Field(0.0, ge=0.0, le=1.0, description="share of the steps before the ControlNet starts")
        end: float = Field(1.0, ge=0.0, le=1.0, description="share of the steps after which it stops")
        guess_mode: bool = Field(False, description="conditional half only, residuals weighted 0.1 … 1")

    class Outputs(Ports):
        control: Control
        height: int
        width: int

    @classmethod
    def check_inputs(cls, known):
        from nodegraph.nodes._control import range_problem

        return range_problem(known)

    def run(self, i, ctx):
        from nodegraph.models.controlnet import check_family
        from nodegraph.nodes._control import ControlEntry, check_range

        check_range(i.start, i.end)
        if i.unet is not None:
            check_family(i.controlnet, i.unet)
        image = i.image.to(device=ctx.device, dtype=i.controlnet.dtype)  # (1, 3, H, W) in [0, 1]
        chain = (*(i.control or ()), ControlEntry(i.controlnet, image, i.strength, i.start, i.end,
                                                            i.guess_mode))
        return {"control": chain, "height": int(image.shape[-2]), "width": int(image.shape[-1])}


@node("ControlNetUNetStep", version=1)
class ControlNetUNetStep(Node):
    """One UNet forward guided by a control chain: each ControlNet whose [start, end) covers step `index` of
    `timesteps` reads the same (scaled, CFG-doubled) latents, timestep and embeddings as the UNet; their
    residuals, times their strengths, are summed and added to the UNet's skip connections and mid block.
    ControlNets outside their range are not run at all (diffusers runs them at scale 0: the same result).
    A guess-mode ControlNet reads only the conditional half, and the unconditional half gets zero residuals.

    `text_embeds` and `time_ids` are SDXL's added conditions (CFG batches like `embeddings`).
    """

    class Inputs(Ports):
        unet: UNet
        latents: Latent
        t: Tensor
        embeddings: Embeddings
        control: Control
        index: int = Field(ge=0, description="the step's index in `timesteps` ($loop.index)")
        timesteps: Timesteps
        text_embeds: Optional[Embeddings] = None
        time_ids: Optional[Tensor] = None

    class Outputs(Ports):
        noise_pred: Tensor

    def run(self, i, ctx):
        import torch

        from nodegraph.nodes._control import conditional_half

        x = i.latents  # (B, C, h, w)
        if i.embeddings.shape[0] == 2 * x.shape[0]:
            x = torch.cat([x, x])  # (2B, C, h, w): unconditional and conditional in one call
        elif i.embeddings.shape[0] != x.shape[0]:
            raise ValueError(f"`embeddings` batch {i.embeddings.shape[0]} does not fit `latents` batch "
                             f"{x.shape[0]}; it must be equal (no guidance) or twice (guidance)")
        added = {} if i.text_embeds is None else {"text_embeds": i.text_embeds, "time_ids": i.time_ids}
        n = len(i.timesteps)
        guided = x.shape[0] != i.latents.shape[0]
        down, mid = None, None
        with torch.no_grad():
            for entry in i.control:
                if i.index / n < entry.start or (i.index + 1) / n > entry.end:
                    continue  # diffusers' `controlnet_keep` is 0 for this step
                if guided and entry.conditional_only:
                    d, m = conditional_half(entry, i.latents, i.t, i.embeddings, added)
                else:
                    image = entry.image.expand(x.shape[0], -1, -1, -1)  # (2B, 3, H, W): one image for every sample
                    d, m = entry.controlnet(x, i.t, i.embeddings, image, entry.strength, guess_mode=entry.guess_mode,
                                            **added)
                down = d if down is None else [a + b for a, b in zip(down, d)]
                mid = m if mid is None else mid + m
            return {"noise_pred": i.unet(x, i.t, encoder_hidden_states=i.embeddings, down_residuals=down,
                                         mid_residual=mid, **added)}

