"""Flux.1's checkpoint nodes (diffusers 0.42.1, FluxPipeline): the family check that runs before anything loads
and tells dev (guidance embedding) from schnell, the settings each variant is run with, and the two text encoders
with their tokenizers (CLIP-L for the pooled vector, T5-XXL for the sequence). The transformer, VAE and scheduler
load through LoadTransformer, LoadVAE and LoadScheduler."""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import ModelSource, Role, TextEncoder, Tokenizer
from nodegraph.nodes.loaders import CheckpointInputs, checkpoint_reads, load_cached

DEV_GUIDANCE = 3.5  # FluxPipeline's default guidance_scale; FLUX.1-schnell's card runs it with 0.0


class FluxWarning(UserWarning):
    """A setting a Flux checkpoint ignores (guidance on schnell)."""


@node("FluxCheckpoint", version=1)
class FluxCheckpoint(Node):
    """Check that `model` is a Flux.1 pipeline before anything loads (model_index.json, the transformer class, the
    VAE's latent width; a single file from its key index), and that the `transformer`, CLIP-L (`text_encoder`),
    T5 (`text_encoder_2`) and `vae` given instead of the model's are those components. `schnell` is true when the
    transformer has no guidance embedding (FLUX.1-schnell).

    Passes `model` on: wire the loaders to it, so they run after the check.
    """

    class Inputs(CheckpointInputs):
        input_name: str = Field("model", description="the graph input that feeds `model`, for messages")
        graph: str = Field("graphs/flux.yaml", description="the graph named in messages")
        transformer: ModelSource = Field("", description="a transformer file or folder replacing the model's, "
                                                         "checked too")
        text_encoder: ModelSource = Field("", description="a CLIP-L file or folder replacing the model's, checked")
        text_encoder_2: ModelSource = Field("", description="a T5-XXL file or folder replacing the model's, checked")
        vae: ModelSource = Field("", description="a VAE file or folder replacing the model's, checked too")

    class Outputs(Ports):
        model: ModelSource
        schnell: bool

    def run(self, i, ctx):
        from nodegraph.models.flux_family import component_problem, flux_problem, has_guidance, latent_channels

        parts = {"transformer": i.transformer, "text_encoder": i.text_encoder, "text_encoder_2": i.text_encoder_2,
                 "vae": i.vae}

        def check():
            problem = flux_problem(i.model, i.revision, i.input_name, i.graph)
            if problem:
                return problem, None
            channels = latent_channels(i.model, i.revision)
            problem = next((p for name, source in parts.items()
                            if source and (p := component_problem(source, name, channels))), None)
            return problem, (None if problem else not has_guidance(i.model, i.transformer, i.revision))

        problem, schnell = ctx.components.get_or_load(("flux-check", i.model, i.revision, i.input_name, i.graph,
                                                       *parts.values()), check)
        if problem:
            raise ValueError(problem)
        return {"model": i.model, "schnell": schnell}


@node("FluxSettings", version=1)
class FluxSettings(Node):
    """The settings a Flux.1 variant runs with: 0 steps or 0 max_sequence_length mean the variant's own (dev 28
    steps and 512 T5 tokens, as FluxPipeline's defaults; schnell 4 and 256, as its model card). schnell has no
    guidance embedding, so `guidance` is ignored there, with a warning unless it is 3.5 (the default) or 0."""

    class Inputs(Ports):
        schnell: bool = Field(False, description="the checkpoint has no guidance embedding (FluxCheckpoint)")
        steps: Annotated[int, Role("steps")] = Field(0, ge=0, le=1000, description="denoising steps; 0 = the "
                                                                              "variant's (28 dev, 4 schnell)")
        max_sequence_length: int = Field(0, ge=0, le=512, description="T5 tokens; 0 = the variant's (512 dev, "
                                                                       "256 schnell)")
        # the guidance Flux users set (true CFG is off by default): shown as A1111's "CFG scale", the one guidance
        # field; Forge writes it "Distilled CFG Scale" beside "CFG scale: 1", a field ROLES has no name for yet
        guidance: Annotated[float, Role("guidance_scale")] = Field(DEV_GUIDANCE, ge=0.0, le=100.0,
                                                                   description="dev's distilled guidance")

    class Outputs(Ports):
        steps: int
        max_sequence_length: int
        guidance: float

    def run(self, i, ctx):
        if i.schnell and i.guidance not in (DEV_GUIDANCE, 0.0):
            warnings.warn(f"{ctx.node_id}: `guidance` {i.guidance} is ignored: this is a FLUX.1-schnell checkpoint "
                          f"(no guidance embedding)", FluxWarning, stacklevel=1)
        steps, length = (4, 256) if i.schnell else (28, 512)
        return {"steps": i.steps or steps, "max_sequence_length": i.max_sequence_length or length,
                "guidance": i.guidance}


@node("FluxTrueCFGOff", version=1)
class FluxTrueCFGOff(Node):
    """Whether FluxPipeline's true CFG is off: it runs only with `true_cfg_scale` > 1 and a negative prompt (an
    empty one counts as none, as the pipeline's default None does). Feed `off` to the negative's encoders' and
    transformer step's `skip`, so nothing is computed for it otherwise."""

    class Inputs(Ports):
        true_cfg_scale: float = Field(1.0, ge=0.0, le=100.0, description="true CFG scale; ≤ 1 = off")
        negative_prompt: Annotated[str, Role("negative_prompt")] = Field("", description="the negative prompt; "
                                                                                          "empty = off")

    class Outputs(Ports):
        off: bool

    def run(self, i, ctx):
        return {"off": not (i.true_cfg_scale > 1 and i.negative_prompt != "")}


@node("LoadFluxText", version=1)
class LoadFluxText(Node):
    """Load a Flux (or SD3) checkpoint's CLIP-L text encoder and T5 encoder with their tokenizers: components
    `text_encoder` / `tokenizer` and `t5` (text_encoder_2 / tokenizer_2 for Flux, _3 for SD3)."""

    class Inputs(CheckpointInputs):
        t5: Literal["text_encoder_2", "text_encoder_3"] = Field(
            "text_encoder_2", description="the T5 component: text_encoder_2 (Flux) or text_encoder_3 (SD3)")
        clip_override: ModelSource = Field("", description="a CLIP-L file (clip_l.safetensors) or folder to use "
                                                           "instead of the model's; empty = the model's")
        t5_override: ModelSource = Field("", description="a T5-XXL file (t5xxl_fp16 / t5xxl_fp8_e4m3fn) or folder "
                                                         "to use instead of the model's; empty = the model's")

    class Outputs(Ports):
        clip: TextEncoder
        clip_tokenizer: Tokenizer
        t5: TextEncoder
        t5_tokenizer: Tokenizer

    @classmethod
    def model_reads(cls, known):  # each encoder from its override file or folder when one is given
        parts = (("text_encoder", known.get("clip_override")), (known.get("t5") or "text_encoder_2",
                                                                 known.get("t5_override")))
        return [read for component, override in parts
                for read in checkpoint_reads(known, component, source=override or None)]

    def run(self, i, ctx):
        from types import SimpleNamespace

        from nodegraph.nodes.flow_loaders import load_override

        def encoder(component: str, override: str):
            if not override:
                return load_cached(i, component, ctx)
            where = SimpleNamespace(override=override, model=i.model, revision=i.revision, allow_pickle=i.allow_pickle)
            return load_override(where, component, ctx)

        tokenizer = "tokenizer_" + i.t5[-1]
        return {"clip": encoder("text_encoder", i.clip_override),
                "clip_tokenizer": load_cached(i, "tokenizer", ctx, placed=False),
                "t5": encoder(i.t5, i.t5_override), "t5_tokenizer": load_cached(i, tokenizer, ctx, placed=False)}
