"""Stable Diffusion 3 / 3.5's nodes (diffusers 0.42.1, StableDiffusion3Pipeline.encode_prompt / __call__): the
family check, the text encoders' loaders (the CLIP pair, then T5), the three-encoder conditioning, the starting
noise, one transformer call per step (negatives and positives in one batch), and skip-layer guidance. CFG is
CFGCombine (u + g·(c − u)); the prompts are encoded by CLIPPooledEncode and T5TextEncode; the scheduler step is
SchedulerStep."""

from __future__ import annotations

from typing import Annotated, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import (VAE, Embeddings, Generator, Latent, ModelSource, Role, Tensor, TextEncoder,
                                  Tokenizer, Transformer)
from nodegraph.nodes.loaders import CheckpointInputs, checkpoint_reads, load_cached

T5_LENGTH_HELP = "T5 tokens, padding included (≤ 512); the sequence is 77 CLIP tokens + these"
LAYERS_HINT = "write block indices separated by commas, e.g. \"7, 8, 9\""


@node("SD3Checkpoint", version=1)
class SD3Checkpoint(Node):
    """Check that `model` is a Stable Diffusion 3 / 3.5 pipeline before anything loads: its model_index.json,
    transformer class and VAE latent width, from config files only (another family's single file from its key
    index; SD3.5's single files pass). Passes `model` on: wire the loaders to it, so they run after the check.
    `input_name` names the graph input in messages."""

    class Inputs(CheckpointInputs):
        input_name: str = Field("model", description="the graph input that feeds `model`, for messages")

    class Outputs(Ports):
        model: ModelSource  # `model` passed on: a location, checked where it enters

    def run(self, i, ctx):
        from nodegraph.models.sd3_family import sd3_problem

        problem = ctx.components.get_or_load(("sd3-check", i.model, i.revision, i.input_name),
                                             lambda: sd3_problem(i.model, i.revision, i.input_name) or "")
        if problem:
            raise ValueError(problem)
        return {"model": i.model}


@node("LoadSD3CLIP", version=1)
class LoadSD3CLIP(Node):
    """Load SD3's two CLIP text encoders and their tokenizers: CLIP-L and OpenCLIP bigG, both with their
    projection (`text_encoder`, `text_encoder_2`). T5 loads apart (LoadSD3T5), so a graph can encode with the
    CLIPs and free them before the much larger T5 is read. `override` / `override_2` replace the encoders (ComfyUI's
    text_encoders/clip_l.safetensors and clip_g.safetensors, or folders); the tokenizers stay the model's."""

    class Inputs(CheckpointInputs):
        override: ModelSource = Field("", description="a CLIP-L file or folder replacing the model's (empty = the "
                                                      "model's)")
        override_2: ModelSource = Field("", description="a bigG file or folder replacing the model's (empty = the "
                                                        "model's)")

    class Outputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text_encoder_2: TextEncoder
        tokenizer_2: Tokenizer

    @classmethod
    def model_reads(cls, known):
        return checkpoint_reads(known, "text_encoder", "text_encoder_2")

    def run(self, i, ctx):
        return {"text_encoder": _encoder(i, "text_encoder", i.override, ctx),
                "tokenizer": load_cached(i, "tokenizer", ctx, placed=False),
                "text_encoder_2": _encoder(i, "text_encoder_2", i.override_2, ctx),
                "tokenizer_2": load_cached(i, "tokenizer_2", ctx, placed=False)}


@node("LoadSD3T5", version=1)
class LoadSD3T5(Node):
    """Load SD3's T5-XXL text encoder (`text_encoder_3`) and its tokenizer. A pipeline whose model_index.json sets
    `text_encoder_3` to null gives none (`has_t5` false): its part of the conditioning is then zeros, as in
    diffusers. `override` replaces the encoder (ComfyUI's text_encoders/t5xxl_fp16.safetensors or
    t5xxl_fp8_e4m3fn.safetensors, or a folder); the tokenizer stays the model's."""

    class Inputs(CheckpointInputs):
        override: ModelSource = Field("", description="a T5-XXL file or folder replacing the model's (empty = the "
                                                      "model's)")

    class Outputs(Ports):
        text_encoder_3: Optional[TextEncoder] = None
        tokenizer_3: Optional[Tokenizer] = None
        has_t5: bool

    @classmethod
    def model_reads(cls, known):
        return checkpoint_reads(known, "text_encoder_3")

    def run(self, i, ctx):
        from nodegraph.models.loading import read_config
        from nodegraph.models.single_file import is_single_file

        pipeline = i.config if i.config and is_single_file(i.model) else i.model  # a file has no model_index
        entry = read_config(pipeline, "model_index", i.revision).get("text_encoder_3") or [None, "T5EncoderModel"]
        if entry[1] is None:
            return {"text_encoder_3": None, "tokenizer_3": None, "has_t5": False}
        return {"text_encoder_3": _encoder(i, "text_encoder_3", i.override, ctx),
                "tokenizer_3": load_cached(i, "tokenizer_3", ctx, placed=False), "has_t5": True}


def _encoder(i, name: str, override: str, ctx):
    """Text encoder `name` of the model, or from `override`: a single file is configured from the pipeline
    (`config` when `model` is itself a single file, else `model`)."""
    if not override:
        return load_cached(i, name, ctx)
    from nodegraph.models.loading import load_component
    from nodegraph.models.single_file import is_single_file

    pipeline = i.config or i.model
    config = pipeline if is_single_file(override) else None
    key = (f"{name}-override", override, pipeline, i.revision, str(ctx.dtype), str(ctx.device))
    return ctx.components.get_or_load(key, lambda: load_component(
        override, name, dtype=ctx.dtype, device=ctx.device, config=config, allow_pickle=i.allow_pickle))


@node("SD3Guidance", version=1)
class SD3Guidance(Node):
    """Which negative encodings a run needs: none while CFG is off (`guidance_scale` ≤ 1), as
    StableDiffusion3Pipeline then encodes no negative prompt; no T5 one without a T5 encoder. Feed `off` to the
    negative CLIPPooledEncodes' `skip`, `skip_negative_t5` to the negative T5TextEncode's, `skip_t5` to the
    positive one's. (graphs/sd3.yaml uses it twice: before T5 loads, `has_t5` left at its default, so the CLIP
    prompts are encoded before T5 is read.)"""

    class Inputs(Ports):
        guidance_scale: float = Field(7.0, ge=0.0, le=100.0, description="CFG scale; ≤ 1 turns it off")
        has_t5: bool = Field(True, description="whether the checkpoint has a T5 encoder")
        skip_guidance_layers: str = Field("", description="checked here, before anything loads (SkipLayerGuidance "
                                                          "uses it)")

    class Outputs(Ports):
        off: bool
        skip_t5: bool
        skip_negative_t5: bool

    @classmethod
    def check_inputs(cls, known):
        return layers_problem(known, "skip_guidance_layers")

    def run(self, i, ctx):
        block_list(i.skip_guidance_layers, "skip_guidance_layers")
        off = not i.guidance_scale > 1
        return {"off": off, "skip_t5": not i.has_t5, "skip_negative_t5": off or not i.has_t5}


@node("SD3Conditioning", version=1)
class SD3Conditioning(Node):
    """SD3's text conditioning from its three encoders, concatenated as StableDiffusion3Pipeline.encode_prompt
    does: CLIP-L's and bigG's hidden states side by side on features (768 + 1280), zero-padded to T5's width, then
    T5's states after them on the sequence: (B, 77 + max_sequence_length, 4096); pooled = CLIP-L's ‖ bigG's
    projected embeddings (B, 2048). Without T5 (`t5` None) its part is zeros of the transformer's text width.
    Skipped CLIP encodings (a negative prompt while CFG is off) give no conditioning (None)."""

    class Inputs(Ports):
        clip_l: Optional[Embeddings] = Field(None, description="CLIP-L's hidden states (CLIPPooledEncode)")
        clip_g: Optional[Embeddings] = Field(None, description="bigG's hidden states")
        pooled_l: Optional[Embeddings] = Field(None, description="CLIP-L's projected embedding")
        pooled_g: Optional[Embeddings] = Field(None, description="bigG's projected embedding")
        t5: Optional[Embeddings] = Field(None, description="T5's states (None: the pipeline has no T5)")
        transformer: Transformer
        max_sequence_length: int = Field(256, ge=1, le=512, description=T5_LENGTH_HELP)

    class Outputs(Ports):
        embeddings: Optional[Embeddings] = None
        pooled: Optional[Embeddings] = None

    def run(self, i, ctx):
        import torch
        import torch.nn.functional as F

        if i.clip_l is None or i.clip_g is None:
            return {"embeddings": None, "pooled": None}
        clip = torch.cat([i.clip_l, i.clip_g], dim=-1)  # (B, 77, C_L + C_G)
        t5 = i.t5
        if t5 is None:
            width = i.transformer.config.joint_attention_dim
            t5 = clip.new_zeros(clip.shape[0], i.max_sequence_length, width)  # (B, L, 4096)
        if clip.shape[-1] > t5.shape[-1]:
            raise ValueError(f"the CLIP states are {clip.shape[-1]} wide together, more than T5's {t5.shape[-1]}: "
                             f"are these SD3's encoders (CLIP-L, bigG, T5-XXL)?")
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))  # (B, 77, 4096)
        return {"embeddings": torch.cat([clip, t5.to(clip.dtype)], dim=-2),  # (B, 77 + L, 4096)
                "pooled": torch.cat([i.pooled_l, i.pooled_g], dim=-1)}  # (B, P_L + P_G)


@node("SD3Latent", version=1)
class SD3Latent(Node):
    """Gaussian starting latents in the run's dtype (as StableDiffusion3Pipeline draws them, in the text
    embeddings' dtype), from the CPU generator: (batch_size, transformer channels, height / f, width / f) for a
    VAE of factor f. Height and width must be multiples of f · patch size (16 for SD3)."""

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
        from nodegraph.nodes._diffusion import check_multiple, randn, vae_scale_factor

        factor, config = vae_scale_factor(i.vae), i.transformer.config
        step = factor * config.patch_size
        check_multiple(step, height=i.height, width=i.width)
        for name, size in (("height", i.height), ("width", i.width)):
            if size // step > config.pos_embed_max_size:
                raise ValueError(f"`{name}` {size} is larger than this transformer's position table allows: at "
                                 f"most {config.pos_embed_max_size * step} pixels")
        shape = (i.batch_size, i.transformer.config.in_channels, i.height // factor, i.width // factor)
        return {"latents": randn(shape, i.generator, ctx)}


@node("SD3TransformerStep", version=1)
class SD3TransformerStep(Node):
    """One SD3 transformer call at scheduler timestep `t` (0..1000, as is): the velocity prediction in the
    model's dtype. With guidance on (`guidance_scale` > 1) the batch is [negatives, positives] in one call and
    `prediction` holds 2B items for CFGCombine."""

    class Inputs(Ports):
        transformer: Transformer
        latents: Latent
        t: Tensor
        embeddings: Embeddings
        pooled: Embeddings
        negative_embeddings: Optional[Annotated[Embeddings, Role("negative")]] = Field(
            None, description="the negative prompt's (CFG)")
        negative_pooled: Optional[Annotated[Embeddings, Role("negative")]] = Field(
            None, description="the negative prompt's pooled (CFG)")
        guidance_scale: float = Field(7.0, ge=0.0, le=100.0, description="CFG scale; ≤ 1 turns it off")

    class Outputs(Ports):
        prediction: Tensor

    def run(self, i, ctx):
        import torch

        model, x = i.transformer, i.latents  # x: (B, C, h, w)
        context, pooled = i.embeddings, i.pooled
        if i.guidance_scale > 1:
            if i.negative_embeddings is None or i.negative_pooled is None:
                raise ValueError("guidance is on (guidance_scale > 1) but no negative embeddings were given; "
                                 "encode the negative prompt (\"\" by default) and pass it")
            x = torch.cat([x, x])
            context = torch.cat([i.negative_embeddings, context])
            pooled = torch.cat([i.negative_pooled, pooled])
        timestep = i.t.reshape(()).expand(x.shape[0])  # (B or 2B,)
        with torch.no_grad():
            out = model(x.to(model.dtype), context.to(model.dtype), pooled.to(model.dtype), timestep)
        return {"prediction": out}  # (B or 2B, C, h, w)


@node("SkipLayerGuidance", version=1)
class SkipLayerGuidance(Node):
    """Skip-layer guidance (SD3.5; diffusers' StableDiffusion3Pipeline `skip_guidance_layers`): on steps
    `index` with steps·start < index < steps·stop, and only while CFG is on, one more positive-only transformer
    call with the blocks `layers` left out; the guided prediction moves by (text − skipped) · scale, text being
    the positive half of `prediction`. Otherwise `noise_pred` passes through. SD3.5 Medium's card uses [7, 8, 9]."""

    class Inputs(Ports):
        transformer: Transformer
        latents: Latent
        t: Tensor
        embeddings: Embeddings
        pooled: Embeddings
        prediction: Tensor
        noise_pred: Tensor
        index: int = Field(0, ge=0, description="this step's 0-based index ($loop.index)")
        steps: int = Field(28, ge=1, le=1000, description="number of denoising steps of the run")
        guidance_scale: float = Field(7.0, ge=0.0, le=100.0, description="CFG scale; ≤ 1: no skip-layer guidance")
        layers: str = Field("", description="blocks to skip, e.g. \"7, 8, 9\" (empty: off)")
        scale: float = Field(2.8, ge=0.0, le=100.0, description="skip-layer guidance scale")
        start: float = Field(0.01, ge=0.0, le=1.0, description="first share of the steps where it applies")
        stop: float = Field(0.2, ge=0.0, le=1.0, description="share of the steps where it stops")

    class Outputs(Ports):
        noise_pred: Tensor

    @classmethod
    def check_inputs(cls, known):
        return layers_problem(known, "layers")

    def run(self, i, ctx):
        import torch

        layers = block_list(i.layers, "layers")
        active = layers and i.guidance_scale > 1 and i.steps * i.start < i.index < i.steps * i.stop
        if not active:
            return {"noise_pred": i.noise_pred}
        model, x = i.transformer, i.latents
        blocks = len(model.transformer_blocks)
        if any(n >= blocks for n in layers):
            raise ValueError(f"`skip_guidance_layers` {i.layers!r} names blocks this transformer lacks; it has "
                             f"blocks 0 to {blocks - 1}")
        timestep = i.t.reshape(()).expand(x.shape[0])
        with torch.no_grad():
            skipped = model(x.to(model.dtype), i.embeddings.to(model.dtype), i.pooled.to(model.dtype), timestep,
                            skip_layers=layers)
        text = i.prediction.chunk(2)[1]  # the positive half of [negatives, positives]
        return {"noise_pred": i.noise_pred + (text - skipped) * i.scale}


def layers_problem(known: dict, name: str):
    """check_inputs' answer for a block-list text input: None, or (where, what, hint)."""
    if isinstance(known.get(name), str):
        try:
            block_list(known[name])
        except ValueError as exc:
            return (name,), str(exc), LAYERS_HINT
    return None


def block_list(text: str, name: str = "") -> list[int]:
    """"7, 8, 9" (or "[7, 8, 9]") → [7, 8, 9]; "" → []. A text input, so the web form and `--set` take it as is;
    `name` (the input) prefixes the error."""
    body = text.strip().removeprefix("[").removesuffix("]")
    where = f"`{name}`: " if name else ""
    try:
        layers = [int(part) for part in body.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{where}{text!r} is not a list of block indices; {LAYERS_HINT}") from None
    if any(n < 0 for n in layers):
        raise ValueError(f"{where}{text!r} has a negative block index; {LAYERS_HINT}")
    return layers
