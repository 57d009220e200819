"""Loader nodes of the flow-matching transformer families (Z-Image today): the family check that runs before
anything loads, the denoising transformer, and a text encoder with its tokenizer. The VAE and the scheduler load
through LoadVAE (whose `override` takes a VAE file such as ae.safetensors) and LoadScheduler, whose meaning is the
same for every family."""

from __future__ import annotations

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import ModelSource, TextEncoder, Tokenizer, Transformer
from nodegraph.nodes.loaders import CheckpointInputs, checkpoint_reads, fp8_weights, load_cached

OVERRIDE_HELP = "a single file or folder to load instead of the model's own (empty = the model's)"


@node("ZImageCheckpoint", version=1)
class ZImageCheckpoint(Node):
    """Check that `model` is a Z-Image pipeline before anything loads: its model_index.json, transformer class and
    VAE latent width (16 channels), from config files only (an SD/SDXL single file from its key index); and that
    the component files given instead of the model's own are of this family, from their keys and shapes.

    Passes `model` on: wire the loaders to it, so they run after the check. `input_name` names the graph input
    in messages. `vae_scale_factor` is the VAE's, read from its config: the starting latents can be drawn without
    the VAE loaded, which then loads only for the decode, after the transformer is freed.
    """

    class Inputs(CheckpointInputs):
        input_name: str = Field("model", description="the graph input that feeds `model`, for messages")
        transformer: ModelSource = Field("", description="a transformer file or folder replacing the model's, "
                                                         "checked too")
        text_encoder: ModelSource = Field("", description="a text encoder file or folder replacing the model's, "
                                                          "checked too")
        vae: ModelSource = Field("", description="a VAE file or folder replacing the model's, checked too")

    class Outputs(Ports):
        model: ModelSource  # `model` passed on: a location, checked where it enters
        vae_scale_factor: int

    def run(self, i, ctx):
        from nodegraph.models.flow_family import component_problem, z_image_problem

        def check() -> str:
            parts = {"transformer": i.transformer, "text_encoder": i.text_encoder, "vae": i.vae}
            found = [component_problem(source, name) for name, source in parts.items() if source]
            return z_image_problem(i.model, i.revision, i.input_name, own_vae=not i.vae) or next(
                (p for p in found if p), "")

        problem = ctx.components.get_or_load(("z-image-check", i.model, i.revision, i.input_name, i.transformer,
                                              i.text_encoder, i.vae), check)
        if problem:
            raise ValueError(problem)
        factor = ctx.components.get_or_load(("z-image-vae-factor", i.model, i.revision, i.vae), lambda: vae_factor(i))
        return {"model": i.model, "vae_scale_factor": factor}


def vae_factor(i) -> int:
    """2^(levels − 1) of the VAE the graph will load: `i.vae`'s folder config, else the model's (a VAE file is
    configured from the model's, as LoadVAE's override loads it)."""
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import is_single_file

    own = not i.vae or is_single_file(i.vae)
    config = read_config(i.model, "vae", i.revision) if own else read_config(i.vae, "vae")
    return 2 ** (len(config.get("block_out_channels", (0,) * 4)) - 1)


@node("LoadTransformer", version=1)
class LoadTransformer(Node):
    """Load the denoising transformer of a checkpoint (ZImageTransformer2DModel) in the run's dtype, or the one
    `override` names: a diffusers folder, or a single file as ComfyUI (diffusion_models/) and the publisher ship
    it, bf16 or float8 (kept float8, upcast per layer), configured from `model`."""

    class Inputs(CheckpointInputs):
        override: ModelSource = Field("", description=OVERRIDE_HELP)

    class Outputs(Ports):
        transformer: Transformer

    @classmethod
    def model_reads(cls, known):  # the plan's memory estimate and the read-ahead see the transformer's files
        return checkpoint_reads(known, "transformer", source=known.get("override"))

    def run(self, i, ctx):
        if i.override:
            return {"transformer": load_override(i, "transformer", ctx)}
        return {"transformer": load_cached(i, "transformer", ctx)}


@node("LoadTextEncoder", version=1)
class LoadTextEncoder(Node):
    """Load a checkpoint's text encoder and its tokenizer, whatever the family (Z-Image: Qwen3 and its Qwen2
    tokenizer with the chat template). TextEncode encodes with them the way that family's pipeline does.
    `override` replaces the encoder (e.g. ComfyUI's text_encoders/qwen_3_4b.safetensors); the tokenizer, never in
    such a file, stays the model's."""

    class Inputs(CheckpointInputs):
        override: ModelSource = Field("", description=OVERRIDE_HELP)

    class Outputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer

    @classmethod
    def model_reads(cls, known):
        return checkpoint_reads(known, "text_encoder", source=known.get("override"))

    def run(self, i, ctx):
        encoder = load_override(i, "text_encoder", ctx) if i.override else load_cached(i, "text_encoder", ctx)
        return {"text_encoder": encoder, "tokenizer": load_cached(i, "tokenizer", ctx, placed=False)}


def load_override(i, component: str, ctx):
    """`component` from the file or folder `i.override`; a single file is configured from `i.model`."""
    from nodegraph.models.loading import load_component
    from nodegraph.models.single_file import is_single_file

    from nodegraph.memory.usage import release_free_heap

    config = i.model if is_single_file(i.override) else None
    weights = fp8_weights(ctx, component)  # `--weights fp8` (RunMode.weights): the transformer held as float8
    key = (f"{component}-override", i.override, i.model, i.revision, str(ctx.dtype), str(ctx.device), weights)
    return ctx.components.get_or_load(key, lambda: release_free_heap() or load_component(
        i.override, component, dtype=ctx.dtype, device=ctx.device, config=config, allow_pickle=i.allow_pickle,
        weights=weights))
