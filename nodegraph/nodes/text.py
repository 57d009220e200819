"""Text nodes: prompts → CLIP embeddings, and the batch the classifier-free guidance step expects."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, Role, TextEncoder, Tokenizer


@node("TextEncode", version=1)
class TextEncode(Node):
    """Encode a prompt with CLIP.

    `syntax: plain` (default) is diffusers' encoding: 77 tokens, a longer prompt is cut with a warning naming the
    dropped words. `syntax: a1111` reads AUTOMATIC1111's syntax — `(word)`, `(word:1.3)`, `[word]`, `\\(`
    escapes, `BREAK` — and encodes long prompts in 75-token chunks (77·n tokens out); see docs/prompts-and-lora.md.
    `clip_skip` (diffusers' meaning: 0 = off, 1 = the penultimate layer = A1111's "Clip skip: 2").
    `batch_size` repeats the embedding once per image, as diffusers' `num_images_per_prompt` does.
    Given a Qwen3 text encoder (Z-Image), the prompt is encoded as ZImagePipeline does instead: chat template,
    up to `max_sequence_length` tokens, the second-to-last layer, padding dropped (B, tokens, C).
    """

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        prompt: Annotated[str, Role("prompt")] = Field("", description="the text; empty gives the unconditional "
                                                                                 "embedding")
        batch_size: int = Field(1, ge=1, le=64, description="images per prompt")
        syntax: Literal["plain", "a1111"] = Field("plain", description="plain (diffusers) or a1111 (weights, "
                                                                         "BREAK, long prompts)")
        clip_skip: Annotated[int, Role("clip_skip")] = Field(0, ge=0, le=24, description="skip the last k CLIP "
                                                                                             "layers (0 = off)")
        max_sequence_length: int = Field(512, ge=1, le=8192, description="Qwen3 encoders (Z-Image): tokens kept, "
                                                                          "the prompt is cut there; CLIP: unused")
        trim_padding: bool = Field(False, description="Qwen3 encoders (Z-Image): run the encoder on the prompt's own "
                                                      "tokens, not padded to max_sequence_length: ~4x less "
                                                      "encoder work, hidden states equal to the last bits only "
                                                      "(on in fast mode; docs/z-image.md)")
        skip: bool = Field(False, description="encode nothing and output no embeddings (a negative prompt while "
                                              "guidance is off, which diffusers does not encode either)")

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        import warnings

        if i.skip:
            return {"embeddings": None}

        from nodegraph.prompts.a1111 import PromptError
        from nodegraph.prompts.encode import encode_a1111, encode_plain

        if type(i.text_encoder).__name__ == "Qwen3TextModel":
            return {"embeddings": _encode_qwen3(i, ctx)}
        encode = encode_a1111 if i.syntax == "a1111" else encode_plain
        try:
            encoded = encode(i.text_encoder, i.tokenizer, i.prompt, i.clip_skip)
        except PromptError as exc:
            raise PromptError(f"`prompt` {_short(i.prompt)}: {exc}") from None
        for message in encoded.warnings:
            warnings.warn(f"{ctx.node_id}: prompt {_short(i.prompt)}: {message}", PromptWarning, stacklevel=1)
        hidden = encoded.hidden.to(dtype=ctx.dtype, device=ctx.device)
        return {"embeddings": hidden.repeat_interleave(i.batch_size, dim=0)}  # (B, 77·chunks, C)


def _encode_qwen3(i, ctx):
    """ZImagePipeline's prompt encoding, repeated per image: (B, tokens, C) in the run's dtype."""
    import torch

    from nodegraph.models.qwen3_text import encode_prompts

    if i.syntax != "plain" or i.clip_skip:
        raise ValueError("`syntax: a1111` and `clip_skip` are CLIP features; a Qwen3 text encoder (Z-Image) takes "
                         "plain prompts: leave them at plain / 0")
    with torch.no_grad():
        (hidden,) = encode_prompts(i.text_encoder, i.tokenizer, [i.prompt], i.max_sequence_length, device=ctx.device,
                                   trim_padding=i.trim_padding or ctx.fast)
    return hidden.to(dtype=ctx.dtype, device=ctx.device)[None].repeat_interleave(i.batch_size, dim=0)


class PromptWarning(UserWarning):
    """Something in a prompt that users usually want to know about (dropped words, an unclosed bracket)."""


def _short(prompt: str, limit: int = 60) -> str:
    return repr(prompt if len(prompt) <= limit else prompt[:limit] + "…")


@node("CFGEmbeddings", version=1)
class CFGEmbeddings(Node):
    """Stack unconditional and conditional embeddings into one batch for classifier-free guidance.

    With `guidance_scale` ≤ 1 guidance is off (as in diffusers) and only the conditional half is kept, so the
    UNet runs on half the batch. When the two have different lengths (a1111 prompts of different chunk counts),
    the shorter is padded with copies of `pad`, the empty prompt's 77-token encoding, as A1111 does.
    """

    class Inputs(Ports):
        cond: Embeddings
        uncond: Annotated[Embeddings, Role("negative")]
        guidance_scale: Annotated[float, Role("guidance_scale")] = Field(7.5, ge=0.0, le=100.0)
        pad: Optional[Embeddings] = Field(None, description="the empty prompt's encoding, to even out lengths")

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        import torch

        if i.guidance_scale <= 1.0:
            return {"embeddings": i.cond}
        cond, uncond = _pad_to_same_length(i.cond, i.uncond, i.pad)
        return {"embeddings": torch.cat([uncond, cond])}  # (2B, tokens, C): unconditional first


def _pad_to_same_length(cond, uncond, pad):
    import torch

    if cond.shape[1] == uncond.shape[1]:
        return cond, uncond
    if pad is None:
        raise ValueError(f"the prompt ({cond.shape[1]} tokens) and the negative prompt ({uncond.shape[1]} tokens) "
                         f"have different lengths; give CFGEmbeddings `pad` (the empty prompt's encoding, same "
                         f"syntax) so the shorter can be padded, as graphs/stable_diffusion.yaml does")
    unit = pad[:1]  # (1, 77, C)

    def lengthen(x):
        missing = (max(cond.shape[1], uncond.shape[1]) - x.shape[1]) // unit.shape[1]
        return torch.cat([x, unit.to(x).expand(x.shape[0], -1, -1).repeat(1, missing, 1)], dim=1)

    if cond.shape[1] < uncond.shape[1]:
        return lengthen(cond), uncond
    return cond, lengthen(uncond)  # (2B, 77, C): unconditional first
