"""Loader nodes: a checkpoint (local folder, hub repo id or `builtin:NAME`) → model components.

Models are kept in the process-wide component cache keyed by (source, revision, component, dtype, device),
so a second run in the same process does not load them again. Schedulers are never cached: each run gets a
fresh scheduler object, so two runs never share its step state.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal, Optional

from nodegraph.core import Field, Node, Ports, RunContext, node
from nodegraph.core.types import VAE, ModelSource, Role, Scheduler, TextEncoder, Tokenizer, UNet

MODEL_HELP = ("a pipeline folder, a component folder, a hub repo id (org/name), builtin:NAME, or a single-file "
              "checkpoint (.safetensors in the original SD/SDXL layout)")


FAST_COMPONENTS = ("unet", "vae")  # what fast mode (nodegraph/fast) changes
FP8_COMPONENTS = ("unet", "transformer")  # what `--weights fp8` (RunMode.weights) holds as float8: the denoiser


def fp8_weights(ctx: RunContext, component: str):
    """The run's fp8 storage (RunMode.weights) for `component`, None where it does not apply."""
    return ctx.mode.weights if component in FP8_COMPONENTS else None


class CheckpointInputs(Ports):
    model: Annotated[ModelSource, Role("model")] = Field(description=MODEL_HELP, min_length=1)
    revision: Optional[str] = Field(None, description="hub revision (branch, tag or commit)")
    variant: Optional[str] = Field(None, description="weights variant, e.g. fp16 (file.fp16.safetensors)")
    allow_pickle: bool = Field(False, description="allow .bin (pickle) weights; loaded with weights_only=True")
    config: Optional[Annotated[ModelSource, Role("config")]] = Field(
        None, description="single-file checkpoints: a diffusers folder or hub repo "
                                                            "whose configs, tokenizers and scheduler replace the "
                                                            "built-in ones")


class ModelInputs(CheckpointInputs):
    # Measured on a CPU (avx512_bf16): channels-last convs are ~14 % faster in bf16 but no faster in fp32, and in
    # bf16 they round differently from diffusers (up to 8/255 per pixel), so it is opt-in: exactness by default.
    channels_last: bool = Field(False, description="store conv weights channels-last (faster bf16/fp16 "
                                                   "convolutions on CPU; output no longer bit-equal to diffusers)")


def checkpoint_reads(known: dict, *components: str, source: Optional[str] = None) -> list[tuple[str, str, dict]]:
    """`Node.model_reads` of a checkpoint loader: each of `components` from its `model` input (or `source`), with
    the loader options that choose its files; nothing while the model is not known before the run."""
    model = source or known.get("model")
    if not isinstance(model, str) or not model:
        return []
    options = {"variant": known.get("variant"), "allow_pickle": known.get("allow_pickle", False)}
    return [(model, component, options) for component in components]


def load_cached(i: CheckpointInputs, component: str, ctx: RunContext, *, placed: bool = True):
    from nodegraph.models.loading import load_component

    device, dtype = (ctx.device, ctx.dtype) if placed else (None, None)
    channels_last = getattr(i, "channels_last", False)
    config = getattr(i, "config", None) or None
    ema = getattr(i, "ema", False)
    weights = fp8_weights(ctx, component) if placed else None
    key = ("component", i.model, i.revision, i.variant, component, str(dtype), str(device), channels_last, config,
           ema) + ((weights,) if weights else ())
    # fp8 storage (a quarter of fp32) is the run's own choice over streaming
    stream = placed and not weights and ctx.mode.max_memory is not None and _streamed(ctx, i, component)
    # a resident run of a model that names blocks for it (Z-Image) reads a share of them from the file at each call
    # (models/partial_residency.py: a third less resident weight, the same numbers); NODEGRAPH_FILE_READS=0: all held
    partial = placed and component == "transformer" and not stream and not weights \
        and os.environ.get("NODEGRAPH_FILE_READS", "1") != "0"

    def load():
        if placed:  # what the previous phase freed goes back to the OS before this model's pages come in
            from nodegraph.memory.usage import release_free_heap

            release_free_heap()
        kwargs = {"dtype": dtype, "device": device, "channels_last": channels_last} if placed else {}
        if stream:  # the budget leaves less than this model needs: weights from the file (nodegraph/memory)
            kwargs["stream"] = True
        if partial:
            kwargs["partial"] = True
        if weights:  # `--weights fp8`: the denoiser's Linear/Conv weights held as float8 (models/fp8.py)
            kwargs["weights"] = weights
        return load_component(i.model, component, revision=i.revision, variant=i.variant,
                              allow_pickle=i.allow_pickle, config=config, ema=ema, **kwargs)

    return get_or_load_model(ctx, key + (("stream",) if stream else ()) + (("partial",) if partial else ()), load,
                             fast=placed and component in FAST_COMPONENTS)


def _streamed(ctx: RunContext, i: CheckpointInputs, component: str) -> bool:
    from nodegraph.memory.budget import should_stream

    return should_stream(ctx, i.model, component, variant=i.variant, allow_pickle=i.allow_pickle)


def get_or_load_model(ctx: RunContext, key: tuple, load, *, fast: bool = True):
    """`ctx.components.get_or_load(key, load)`; in a fast run (and `fast`), a model of its own, prepared once by
    nodegraph.fast. Prepared in place, so never the default run's cached copy, which stays bit-equal."""
    if not (fast and ctx.fast):
        return ctx.components.get_or_load(key, load)

    from nodegraph.fast.support import check_supported

    check_supported(ctx.device)  # before loading: no second copy of a model fast mode would not change

    def load_prepared():
        from nodegraph.fast import prepare

        return prepare(load())

    return ctx.components.get_or_load(key + ("fast",), load_prepared)


@node("LoadUNet", version=1)
class LoadUNet(Node):
    """Load the denoising UNet (UNet2DModel or UNet2DConditionModel) of a checkpoint.

    With `family` set, a checkpoint of the other family (SD 1.x/2.x vs SDXL) is refused from its config or key
    index, before any weights are read, with a message naming `model` and the graph that runs it.
    """

    class Inputs(ModelInputs):
        ema: bool = Field(False, description="single-file checkpoints: use the EMA weights (model_ema.*) the "
                                             "file also holds, instead of the trained ones")
        family: Literal["", "sd", "sdxl"] = Field("", description="refuse a UNet of another family before loading: "
                                                                  "sd (1.x/2.x) or sdxl; empty = any")

    class Outputs(Ports):
        unet: UNet

    @classmethod
    def model_reads(cls, known):
        return checkpoint_reads(known, "unet")

    def run(self, i, ctx):
        if i.family:
            from nodegraph.models.sdxl import refuse_other_family

            ctx.components.get_or_load(("unet-family", i.model, i.revision, i.family), lambda: refuse_other_family(
                i.model, i.family, "model", i.revision, i.allow_pickle))  # a pickle's index: read once, not per run
        return {"unet": load_cached(i, "unet", ctx)}


@node("LoadVAE", version=1)
class LoadVAE(Node):
    """Load the AutoencoderKL of a checkpoint (images ↔ latents), or the one `override` names instead."""

    class Inputs(ModelInputs):
        override: ModelSource = Field("", description="a VAE file (.safetensors) or folder to use instead of the "
                                              "checkpoint's own; empty = the checkpoint's")

    class Outputs(Ports):
        vae: VAE

    @classmethod
    def model_reads(cls, known):
        return checkpoint_reads(known, "vae", source=known.get("override"))  # `override` replaces the model's VAE

    def run(self, i, ctx):
        if i.override:
            from nodegraph.models.single_file.vae_override import load_override

            key = ("vae-override", i.override, i.model, i.config, str(ctx.dtype), str(ctx.device), i.channels_last)
            return {"vae": get_or_load_model(ctx, key, lambda: load_override(  # fast: prepared as the own VAE is
                i.override, i.model, config=i.config or None, dtype=ctx.dtype, device=ctx.device,
                allow_pickle=i.allow_pickle, channels_last=i.channels_last))}
        return {"vae": load_cached(i, "vae", ctx)}


@node("LoadCLIP", version=1)
class LoadCLIP(Node):
    """Load the CLIP text encoder and its tokenizer of a checkpoint."""

    Inputs = CheckpointInputs

    class Outputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer

    @classmethod
    def model_reads(cls, known):
        return checkpoint_reads(known, "text_encoder")

    def run(self, i, ctx):
        return {"text_encoder": load_cached(i, "text_encoder", ctx),
                "tokenizer": load_cached(i, "tokenizer", ctx, placed=False)}


@node("LoadScheduler", version=1)
class LoadScheduler(Node):
    """Make a fresh scheduler from a checkpoint's scheduler config, optionally as another scheduler class.

    `scheduler` names the class by short name (ddpm, ddim, pndm, unipc, euler, euler_a, dpmpp_2m, lms, lcm, tcd) or
    diffusers class name; empty keeps the checkpoint's own. A swap follows diffusers' `from_config`: settings
    the checkpoint's json does not state take the new class's defaults. `sd_pipeline` applies
    StableDiffusionPipeline's corrections of old configs (steps_offset=1, clip_sample=False).
    """

    class Inputs(CheckpointInputs):
        scheduler: Annotated[str, Role("scheduler")] = Field("", description="scheduler class to use; empty = the "
                                                                              "checkpoint's own")
        sd_pipeline: bool = Field(False, description="apply StableDiffusionPipeline's scheduler-config fixes")
        prediction_type: Literal["", "epsilon", "v_prediction", "sample"] = Field("", description="epsilon, v_prediction or sample, replacing the config's "
                                                     "(SD2.x single files cannot tell ε from v); empty = as loaded")
        timestep_spacing: Literal["", "linspace", "leading", "trailing"] = Field(
            "", description="replaces the config's spacing, as from_config(config, timestep_spacing=...) does "
                            "(trailing for SDXL-Lightning / Hyper-SD); empty = as loaded")

    class Outputs(Ports):
        scheduler: Scheduler

    def run(self, i, ctx):
        from nodegraph.nodes._diffusion import make_scheduler

        config = load_cached(i, "scheduler", ctx, placed=False)
        if i.prediction_type:
            config = dict(config, prediction_type=i.prediction_type)
        if i.timestep_spacing:
            config = dict(config, timestep_spacing=i.timestep_spacing)
        return {"scheduler": make_scheduler(config, i.scheduler or None, sd_pipeline=i.sd_pipeline)}
