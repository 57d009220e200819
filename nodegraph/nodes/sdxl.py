"""SDXL nodes (Podell et al., 2023): checkpoint checks, the two text encoders, the added conditions, the UNet
step that takes them, and the split of one schedule between base and refiner.

Each matches a stage of diffusers' `StableDiffusionXLPipeline` / `StableDiffusionXLImg2ImgPipeline`; the
shipped graphs graphs/sdxl.yaml and graphs/sdxl_refiner.yaml wire them as those pipelines run.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import (VAE, Embeddings, Latent, ModelSource, Role, Scheduler, Tensor, TextEncoder,
                                  Timesteps, Tokenizer, UNet)
from nodegraph.nodes.loaders import CheckpointInputs, checkpoint_reads


@node("SDXLCheckpoint", version=1)
class SDXLCheckpoint(Node):
    """Check that `model` is an SDXL base (or, with `role: refiner`, an SDXL refiner) before anything loads.

    Reads only config files. Passes `model` on (wire the loaders to it, so they run after the check), and the
    pipeline settings of its model_index.json: `force_zeros_for_empty_prompt` (the base's unconditional
    embedding is zeros when the negative prompt is empty). `input_name` names the graph input in messages.
    """

    class Inputs(CheckpointInputs):
        role: Literal["base", "refiner"] = "base"
        input_name: str = Field("model", description="the graph input that feeds `model`, for messages")

    class Outputs(Ports):
        model: ModelSource  # `model` passed on: a location, checked where it enters
        force_zeros_for_empty_prompt: bool

    def run(self, i, ctx):
        from nodegraph.models.sdxl import sdxl_role

        found, index = sdxl_role(i.model, i.revision, i.allow_pickle)
        if found != i.role:
            other = {"base": "an SDXL base checkpoint", "refiner": "an SDXL refiner checkpoint"}
            what = {"base": "an SDXL base checkpoint", "refiner": "an SDXL refiner checkpoint",
                    "sd": "a Stable Diffusion 1.x/2.x checkpoint (its UNet takes no SDXL added conditions)"}[found]
            hint = {"sd": "; run it with graphs/stable_diffusion.yaml",
                    "refiner": "; a refiner only finishes a base's latents: pass it as `refiner` of "
                               "graphs/sdxl_refiner.yaml",
                    "base": "; pass the base as `model`"}[found]
            raise ValueError(f"`{i.input_name}` {i.model!r} is {what}, but this graph needs {other[i.role]} "
                             f"here{hint}.")
        zeros = index.get("force_zeros_for_empty_prompt", i.role == "base")  # the pipeline class's default
        return {"model": i.model, "force_zeros_for_empty_prompt": bool(zeros)}

    @classmethod
    def port_roles(cls, known):
        return {"model": "refiner"} if known.get("role") == "refiner" else {}  # A1111's `Refiner`, not the model


@node("LoadSDXLCLIP", version=1)
class LoadSDXLCLIP(Node):
    """Load SDXL's text encoders and tokenizers: CLIP ViT-L (`text_encoder`, absent from refiners) and OpenCLIP
    bigG with its projection (`text_encoder_2`, transformers' CLIPTextModelWithProjection)."""

    class Inputs(CheckpointInputs):
        first_encoder: bool = Field(True, description="load `text_encoder` too (false for a refiner)")

    class Outputs(Ports):
        text_encoder: Optional[TextEncoder] = None
        tokenizer: Optional[Tokenizer] = None
        text_encoder_2: TextEncoder
        tokenizer_2: Tokenizer

    @classmethod
    def model_reads(cls, known):  # in load order: `text_encoder_2` first, `text_encoder` unless first_encoder is false
        return checkpoint_reads(known, *(("text_encoder_2",) if known.get("first_encoder", True) is False
                                         else ("text_encoder_2", "text_encoder")))

    def run(self, i, ctx):
        from nodegraph.nodes.loaders import load_cached

        out = {"text_encoder_2": load_cached(i, "text_encoder_2", ctx),
               "tokenizer_2": load_cached(i, "tokenizer_2", ctx, placed=False)}
        if i.first_encoder:
            out.update(text_encoder=load_cached(i, "text_encoder", ctx),
                       tokenizer=load_cached(i, "tokenizer", ctx, placed=False))
        return out


@node("SDXLTextEncode", version=1)
class SDXLTextEncode(Node):
    """Encode a prompt as SDXL does: each encoder's penultimate hidden state, concatenated on channels
    (768 + 1280 = 2048 for SDXL 1.0), and the pooled, projected embedding of `text_encoder_2`.

    `prompt_2` goes to the second encoder ("" = the same as `prompt`). Without `text_encoder` (a refiner) only
    the second encoder is used. With `zeros_if_empty` and both prompts empty, the outputs are zeros
    (diffusers' `force_zeros_for_empty_prompt` for the negative prompt). `batch_size` repeats per image.
    `syntax` and `clip_skip` mean what they mean for TextEncode (docs/prompts-and-lora.md): `clip_skip` k reads
    `hidden_states[-(k + 2)]` of both encoders (diffusers' SDXL `clip_skip`; the pooled embedding is unchanged);
    in a1111 syntax each encoder is encoded in chunks, the one with fewer chunks is padded with its empty-prompt
    chunk (as ComfyUI does for SDXL), and the pooled embedding is the first chunk's.
    """

    class Inputs(Ports):
        text_encoder: Optional[TextEncoder] = None
        tokenizer: Optional[Tokenizer] = None
        text_encoder_2: TextEncoder
        tokenizer_2: Tokenizer
        prompt: Annotated[str, Role("prompt")] = Field("", description="the text")
        prompt_2: str = Field("", description="text for the second encoder; empty = `prompt`")
        zeros_if_empty: bool = Field(False, description="zero embeddings when both prompts are empty")
        batch_size: int = Field(1, ge=1, le=64, description="images per prompt")
        syntax: Literal["plain", "a1111"] = Field("plain", description="plain (diffusers) or a1111 (weights, "
                                                                         "BREAK, long prompts)")
        clip_skip: Annotated[int, Role("clip_skip")] = Field(0, ge=0, le=24, description="skip k more CLIP layers "
                                                                                             "(0 = off: the penultimate)")

    class Outputs(Ports):
        embeddings: Embeddings
        pooled: Embeddings

    def run(self, i, ctx):
        import warnings

        import torch

        from nodegraph.nodes.text import PromptWarning, _short
        from nodegraph.prompts.a1111 import PromptError
        from nodegraph.prompts.encode import TOKENIZE, empty_chunk, encode_chunks

        pairs = [(i.text_encoder, i.tokenizer, "prompt", i.prompt),
                 (i.text_encoder_2, i.tokenizer_2, "prompt_2" if i.prompt_2 else "prompt", i.prompt_2 or i.prompt)]
        if i.text_encoder is None:
            pairs = pairs[1:]
        tokenized, messages = [], {}
        for _, tokenizer, name, text in pairs:
            try:
                chunks, found = TOKENIZE[i.syntax](tokenizer, text)
            except PromptError as exc:
                raise PromptError(f"`{name}` {_short(text)}: {exc}") from None
            tokenized.append(chunks)
            messages.update({f"{name} {_short(text)}: {m}": None for m in found})  # once, not once per encoder
        count = max(len(chunks) for chunks in tokenized)
        for (_, tokenizer, _, _), chunks in zip(pairs, tokenized):
            chunks += [empty_chunk(tokenizer)] * (count - len(chunks))  # equal token counts to concatenate
        encoded = [encode_chunks(encoder, chunks, i.clip_skip, "penultimate")
                   for (encoder, _, _, _), chunks in zip(pairs, tokenized)]
        for message in messages:
            warnings.warn(f"{ctx.node_id}: {message}", PromptWarning, stacklevel=1)
        pooled = encoded[-1].pooled
        if pooled is None:
            raise ValueError("`text_encoder_2` gives no pooled embedding: it must be a CLIPTextModelWithProjection")
        embeddings = torch.cat([e.hidden for e in encoded], dim=-1)  # (1, 77·chunks, ΣC_k)
        if i.zeros_if_empty and not i.prompt and not i.prompt_2:
            embeddings, pooled = torch.zeros_like(embeddings), torch.zeros_like(pooled)
        embeddings = embeddings.to(dtype=ctx.dtype, device=ctx.device)
        pooled = pooled.to(dtype=ctx.dtype, device=ctx.device)
        return {"embeddings": embeddings.repeat_interleave(i.batch_size, dim=0),  # (B, 77·chunks, ΣC_k)
                "pooled": pooled.repeat_interleave(i.batch_size, dim=0)}  # (B, P)


@node("SDXLAddedConditions", version=1)
class SDXLAddedConditions(Node):
    """The time ids of SDXL's micro-conditioning, as a CFG batch like the embeddings: [negative, positive].

    Base: (original height, width, crop top, left, target height, width). Refiner (when `aesthetic_score` is
    set): (original height, width, crop top, left, aesthetic score). Sizes default to the image size of
    `latents` (latent size × the VAE's scale factor); each negative default is its positive value, except the
    negative crop, (0, 0) as in diffusers. With `guidance_scale` ≤ 1 only the positive ids are output.
    """

    class Inputs(Ports):
        latents: Latent
        vae: VAE
        guidance_scale: float = Field(5.0, ge=0.0, le=100.0)
        original_height: Optional[int] = Field(None, gt=0, description="size the image 'was' before cropping")
        original_width: Optional[int] = Field(None, gt=0)
        crop_top: int = Field(0, ge=0)
        crop_left: int = Field(0, ge=0)
        target_height: Optional[int] = Field(None, gt=0)
        target_width: Optional[int] = Field(None, gt=0)
        negative_original_height: Optional[int] = Field(None, gt=0)
        negative_original_width: Optional[int] = Field(None, gt=0)
        negative_crop_top: int = Field(0, ge=0)
        negative_crop_left: int = Field(0, ge=0)
        negative_target_height: Optional[int] = Field(None, gt=0)
        negative_target_width: Optional[int] = Field(None, gt=0)
        aesthetic_score: Optional[float] = Field(None, description="refiner only: the score to aim for")
        negative_aesthetic_score: float = Field(2.5, description="refiner only: the score to steer away from")

    class Outputs(Ports):
        time_ids: Tensor

    def run(self, i, ctx):
        import torch

        from nodegraph.nodes._diffusion import vae_scale_factor

        factor = vae_scale_factor(i.vae)
        height, width = (s * factor for s in i.latents.shape[-2:])
        original = (i.original_height or height, i.original_width or width)
        target = (i.target_height or height, i.target_width or width)
        negative_original = (i.negative_original_height or original[0], i.negative_original_width or original[1])
        negative_target = (i.negative_target_height or target[0], i.negative_target_width or target[1])
        if i.aesthetic_score is None:
            positive = [*original, i.crop_top, i.crop_left, *target]
            negative = [*negative_original, i.negative_crop_top, i.negative_crop_left, *negative_target]
        else:
            positive = [*original, i.crop_top, i.crop_left, i.aesthetic_score]
            negative = [*negative_original, i.negative_crop_top, i.negative_crop_left, i.negative_aesthetic_score]
        batch = i.latents.shape[0]
        ids = torch.tensor([positive], dtype=ctx.dtype, device=ctx.device).repeat(batch, 1)  # (B, n_ids)
        if i.guidance_scale <= 1.0:
            return {"time_ids": ids}
        negative_ids = torch.tensor([negative], dtype=ctx.dtype, device=ctx.device).repeat(batch, 1)
        return {"time_ids": torch.cat([negative_ids, ids])}  # (2B, n_ids)


@node("SDXLUNetStep", version=1)
class SDXLUNetStep(Node):
    """One SDXL UNet forward with the added conditions (pooled text and time ids).

    Like UNetStep: when the embeddings are a CFG batch (twice the latents), the latents are doubled and both
    halves go through the UNet in one call; `pooled` and `time_ids` must be batched like the embeddings.
    """

    class Inputs(Ports):
        unet: UNet
        latents: Latent
        t: Tensor
        embeddings: Embeddings
        pooled: Embeddings
        time_ids: Tensor

    class Outputs(Ports):
        noise_pred: Tensor

    def run(self, i, ctx):
        import torch

        x = i.latents  # (B, C, h, w)
        batch = i.embeddings.shape[0]
        if batch == 2 * x.shape[0]:
            x = torch.cat([x, x])  # (2B, C, h, w): unconditional and conditional in one call
        elif batch != x.shape[0]:
            raise ValueError(f"`embeddings` batch {batch} does not fit `latents` batch {x.shape[0]}; it must be "
                             f"equal (no guidance) or twice (guidance)")
        for name in ("pooled", "time_ids"):
            if getattr(i, name).shape[0] != batch:
                raise ValueError(f"`{name}` batch {getattr(i, name).shape[0]} differs from `embeddings` batch {batch}")
        with torch.no_grad():
            return {"noise_pred": i.unet(x, i.t, encoder_hidden_states=i.embeddings, text_embeds=i.pooled,
                                         time_ids=i.time_ids)}


@node("SplitTimesteps", version=1)
class SplitTimesteps(Node):
    """Split one schedule at a fraction of the noise levels, for base + refiner (an "ensemble of experts").

    `part: high_noise` keeps the timesteps at or above the switch point, 1000·(1 − fraction) for 1000 training
    steps (diffusers' `denoising_end`); `part: low_noise` keeps those below it and makes the scheduler start
    there (diffusers' `denoising_start`; second-order schedulers keep one more step so as not to stop halfway).
    Give each part its own scheduler, set with the same number of steps.
    """

    class Inputs(Ports):
        scheduler: Scheduler
        timesteps: Timesteps
        fraction: Annotated[float, Role("high_noise_frac")] = Field(0.8, gt=0.0, lt=1.0, description="share of the "
                                                                                             "noise levels the first part runs")
        part: Literal["high_noise", "low_noise"] = "high_noise"

    class Outputs(Ports):
        scheduler: Scheduler
        timesteps: Timesteps

    def run(self, i, ctx):
        s, timesteps = i.scheduler, i.timesteps
        train_steps = s.config.num_train_timesteps
        cutoff = int(round(train_steps - i.fraction * train_steps))
        if i.part == "high_noise":
            return {"scheduler": s, "timesteps": timesteps[:int((timesteps >= cutoff).sum())]}
        kept = int((timesteps < cutoff).sum())
        if s.order == 2 and kept % 2 == 0:
            kept += 1
        start = len(timesteps) - kept
        s.set_begin_index(start)
        return {"scheduler": s, "timesteps": timesteps[start:]}
