"""Text nodes of the T5 + CLIP families (Flux.1, Stable Diffusion 3.5): T5's padded sequence, and CLIP's pooled
embedding (with, for SD3, its penultimate hidden states). diffusers 0.42.1: FluxPipeline._get_t5_prompt_embeds /
_get_clip_prompt_embeds, StableDiffusion3Pipeline._get_t5_prompt_embeds / _get_clip_prompt_embeds."""

from __future__ import annotations

from typing import Annotated

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, Role, TextEncoder, Tokenizer

T5_MAX = 512  # FluxPipeline and StableDiffusion3Pipeline refuse a longer max_sequence_length


@node("T5TextEncode", version=1)
class T5TextEncode(Node):
    """Encode a prompt with T5 (Flux's `text_encoder_2`, SD3's `text_encoder_3`) as diffusers does: padded to
    `max_sequence_length` tokens with `</s>` inside (a longer prompt is cut, with a warning naming the dropped
    words), no attention mask, T5's last hidden state (B, max_sequence_length, C), padding kept: the transformer
    attends to the pad positions too, so `max_sequence_length` changes the image. `prompt` empty encodes
    `fallback` instead (Flux's `prompt_2` and SD3's `prompt_3` default to the prompt). `batch_size` repeats it."""

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        prompt: Annotated[str, Role("prompt")] = Field("", description="the text for T5")
        fallback: str = Field("", description="encoded instead when `prompt` is empty")
        batch_size: int = Field(1, ge=1, le=64, description="images per prompt")
        max_sequence_length: int = Field(512, ge=1, le=T5_MAX, description="T5 tokens, padding included (≤ 512)")
        skip: bool = Field(False, description="encode nothing and output no embeddings")

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        import warnings

        import torch

        from nodegraph.nodes.text import PromptWarning, _short

        if i.skip:
            return {"embeddings": None}
        tokenizer, encoder = i.tokenizer, i.text_encoder
        if not hasattr(tokenizer, "dropped") or type(encoder).__name__ != "T5EncoderModel":
            raise ValueError(f"T5TextEncode needs a T5 encoder and its tokenizer; got a {type(encoder).__name__} "
                             f"and a {type(tokenizer).__name__} (wire the checkpoint's text_encoder_2 for Flux, "
                             f"text_encoder_3 for SD3)")
        prompt = i.prompt or i.fallback
        ids, _ = tokenizer([prompt], i.max_sequence_length)  # (1, L)
        dropped = tokenizer.dropped([prompt], i.max_sequence_length)[0]
        if dropped:
            warnings.warn(f"{ctx.node_id}: prompt {_short(prompt)} is longer than max_sequence_length "
                          f"{i.max_sequence_length}; these words were dropped: {dropped!r}", PromptWarning,
                          stacklevel=1)
        with torch.no_grad():
            hidden = encoder(ids.to(encoder.device))  # (1, L, C), no attention mask (as diffusers)
        return {"embeddings": hidden.to(dtype=ctx.dtype, device=ctx.device).repeat_interleave(i.batch_size, dim=0)}


@node("CLIPPooledEncode", version=1)
class CLIPPooledEncode(Node):
    """Encode a prompt with CLIP as Flux and SD3 do: 77 tokens (a longer prompt is cut, with a warning), no mask.
    `pooled` (B, P): a CLIPTextModel's pooler output (the final-normed state at the end-of-text token: Flux's
    CLIP-L), or a CLIPTextModelWithProjection's projected `text_embeds` (SD3's CLIP-L and bigG).
    `embeddings` (B, 77, C): the hidden states `clip_skip` layers before the penultimate one, never normed (SD3's
    sequence; Flux does not use it). `prompt` empty encodes `fallback` instead. `batch_size` repeats them."""

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        prompt: Annotated[str, Role("prompt")] = Field("", description="the text for CLIP")
        fallback: str = Field("", description="encoded instead when `prompt` is empty")
        batch_size: int = Field(1, ge=1, le=64, description="images per prompt")
        clip_skip: int = Field(0, ge=0, le=24, description="SD3: the sequence skips this many more layers "
                                                           "(the pooled output is unchanged)")
        skip: bool = Field(False, description="encode nothing and output nothing")

    class Outputs(Ports):
        pooled: Embeddings
        embeddings: Embeddings

    def run(self, i, ctx):
        import warnings

        import torch

        from nodegraph.nodes.text import PromptWarning, _short

        if i.skip:
            return {"pooled": None, "embeddings": None}
        encoder = i.text_encoder
        if type(encoder).__name__ not in ("CLIPTextModel", "CLIPTextModelWithProjection"):
            raise ValueError(f"CLIPPooledEncode needs a CLIP text encoder; got a {type(encoder).__name__} (a T5 "
                             f"encoder goes to T5TextEncode)")
        layers = encoder.config.num_hidden_layers
        if i.clip_skip > layers - 1:  # hidden_states holds the embeddings and each layer's output
            raise ValueError(f"`clip_skip` is {i.clip_skip}, but this text encoder has {layers} layers; use 0 (off) "
                             f"to {layers - 1}")
        prompt, tokenizer = i.prompt or i.fallback, i.tokenizer
        length = tokenizer.model_max_length
        ids = tokenizer([prompt], padding="max_length", max_length=length, truncation=True).input_ids
        full = tokenizer([prompt]).input_ids[0]
        if len(full) > length:  # diffusers' cut: everything past position length - 1 goes
            warnings.warn(f"{ctx.node_id}: prompt {_short(prompt)} is longer than CLIP's {length} tokens; these "
                          f"words were dropped: {tokenizer.decode(full[length - 1:-1])!r}", PromptWarning,
                          stacklevel=1)
        ids = torch.tensor(ids, device=encoder.device)  # (1, 77)
        with torch.no_grad():
            out = encoder(ids, output_hidden_states=True)
        pooled = out.text_embeds if out.text_embeds is not None else out.pooler_output  # (1, P)
        hidden = out.hidden_states[-(i.clip_skip + 2)]  # (1, 77, C)

        def batch(x):
            return x.to(dtype=ctx.dtype, device=ctx.device).repeat_interleave(i.batch_size, dim=0)

        return {"pooled": batch(pooled), "embeddings": batch(hidden)}
