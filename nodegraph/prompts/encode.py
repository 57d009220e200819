"""Prompt → CLIP hidden states, in the two syntaxes the text-encoding nodes offer.

* plain: diffusers' `encode_prompt` — one 77-token sequence, longer prompts cut (the dropped words are named).
* a1111: weighted 75-token chunks (`a1111.py`), each encoded on its own, weighted as A1111 does
  ("Original" emphasis: scale every position's hidden state by its weight, then rescale the chunk so its
  overall mean is what it was before weighting), and concatenated along the tokens: (1, 77·chunks, C).

Which hidden state is read (`layer`), with `clip_skip` as diffusers defines it (0 = off):
* "last" (SD 1.x/2.x): `final_layer_norm(hidden_states[-(k + 1)])`, the last layer's normalized output when k = 0.
* "penultimate" (SDXL, both encoders): `hidden_states[-(k + 2)]`, never normalized.
A1111's "Clip skip: n" is diffusers' (and nodegraph's) n − 1. The pooled, projected embedding of a
CLIPTextModelWithProjection (SDXL's second encoder) is its final output whatever `clip_skip` is (as in diffusers),
taken from the first chunk of a long prompt (as A1111 and ComfyUI do: that chunk holds the prompt's start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nodegraph.prompts.a1111 import Chunk, chunk_tokens, parse

Layer = Literal["last", "penultimate"]


@dataclass
class Encoded:
    hidden: Any  # torch.Tensor (1, tokens, C); torch is imported only when encoding
    warnings: list[str] = field(default_factory=list)
    pooled: Any = None  # (1, P) for a CLIPTextModelWithProjection, else None


def clip_forward(encoder, ids, clip_skip: int = 0, layer: Layer = "last"):
    """(1, 77) token ids → ((1, 77, C) hidden states `clip_skip` layers before `layer`, (1, P) pooled or None)."""
    import torch

    layers = encoder.config.num_hidden_layers
    most = layers - 1 if layer == "last" else layers - 2  # "penultimate" already skips one layer
    if not 0 <= clip_skip <= most:
        raise ValueError(f"`clip_skip` is {clip_skip}, but this text encoder has {layers} layers; use 0 (off) to "
                         f"{most}")
    with torch.no_grad():
        if layer == "last" and clip_skip == 0:
            out = encoder(ids.to(encoder.device))
            return out.last_hidden_state, _pooled(out)  # after the final layer norm
        out = encoder(ids.to(encoder.device), output_hidden_states=True)  # hidden_states[0]: the embeddings
        if layer == "last":
            return encoder.final_layer_norm(out.hidden_states[-(clip_skip + 1)]), _pooled(out)
        return out.hidden_states[-(clip_skip + 2)], _pooled(out)


def _pooled(out):
    first = out[0]  # CLIPTextModelWithProjection: text_embeds = text_projection(EOS state), (1, P)
    return first if first.ndim == 2 else None


def clip_hidden(encoder, ids, clip_skip: int = 0):
    """(1, 77) token ids → (1, 77, C) hidden states of a CLIPTextModel as SD 1.x/2.x read them."""
    return clip_forward(encoder, ids, clip_skip, "last")[0]


def expand_embedding_tokens(prompt: str, tokenizer) -> str:
    """A multi-vector textual-inversion token `<tok>` stands for `<tok> <tok>_1 … <tok>_{n-1}` (diffusers'
    `maybe_convert_prompt`): the loader adds those tokens to the tokenizer, the prompt names only the first."""
    added = getattr(tokenizer, "added_tokens_encoder", {}) or {}
    if not added:
        return prompt
    for token in set(tokenizer.tokenize(prompt)):
        if token in added and f"{token}_1" in added:
            extra, n = [], 1
            while f"{token}_{n}" in added:
                extra.append(f"{token}_{n}")
                n += 1
            prompt = prompt.replace(token, " ".join([token, *extra]))
    return prompt


def plain_chunks(tokenizer, prompt: str) -> tuple[list[Chunk], list[str]]:
    """diffusers' tokenization: one unweighted 77-token chunk, a longer prompt cut with a warning."""
    prompt = expand_embedding_tokens(prompt, tokenizer)
    length = tokenizer.model_max_length
    ids = tokenizer([prompt], padding="max_length", max_length=length, truncation=True).input_ids[0]
    full = tokenizer([prompt]).input_ids[0]
    warnings = []
    if len(full) > len(ids):  # same test and same cut as diffusers: drop everything past position 76
        dropped = tokenizer.decode(full[length - 1:-1])
        warnings.append(f"the prompt is longer than CLIP's {length} tokens, so these words were dropped: "
                        f"{dropped!r}; shorten it, or use `syntax: a1111` (prompt_syntax=a1111), which encodes "
                        f"long prompts in chunks")
    return [Chunk(list(ids), [1.0] * len(ids))], warnings


def a1111_chunks(tokenizer, prompt: str) -> tuple[list[Chunk], list[str]]:
    """A1111's syntax: weighted 75-token chunks (columns in warnings refer to the prompt as the user wrote it)."""
    parsed = parse(prompt)
    for fragment in parsed.fragments:
        fragment.text = expand_embedding_tokens(fragment.text, tokenizer)
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks = chunk_tokens(parsed, lambda text: tokenizer(text, add_special_tokens=False).input_ids,
                          bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
                          comma=comma if comma != tokenizer.unk_token_id else None)
    return chunks, parsed.warnings


TOKENIZE = {"plain": plain_chunks, "a1111": a1111_chunks}


def empty_chunk(tokenizer) -> Chunk:
    """The empty prompt's chunk: what A1111, ComfyUI and compel append to even out chunk counts."""
    return plain_chunks(tokenizer, "")[0][0]


def encode_chunks(encoder, chunks: list[Chunk], clip_skip: int = 0, layer: Layer = "last") -> Encoded:
    """Encode each chunk on its own, weight it (scale positions, restore the chunk's mean), concatenate."""
    import torch

    states, pooled = [], None
    for chunk in chunks:
        z, chunk_pooled = clip_forward(encoder, torch.tensor([chunk.ids]), clip_skip, layer)  # (1, 77, C)
        pooled = chunk_pooled if pooled is None else pooled  # the first chunk's
        if any(w != 1.0 for w in chunk.weights):
            weights = torch.tensor(chunk.weights, dtype=z.dtype, device=z.device)  # (77,)
            original_mean = z.mean()
            z = z * weights[None, :, None]
            z = z * (original_mean / z.mean())
        states.append(z)
    return Encoded(torch.cat(states, dim=1), pooled=pooled)  # (1, 77·chunks, C)


def encode_plain(encoder, tokenizer, prompt: str, clip_skip: int = 0, layer: Layer = "last") -> Encoded:
    chunks, warnings = plain_chunks(tokenizer, prompt)
    encoded = encode_chunks(encoder, chunks, clip_skip, layer)
    encoded.warnings = warnings
    return encoded


def encode_a1111(encoder, tokenizer, prompt: str, clip_skip: int = 0, layer: Layer = "last") -> Encoded:
    chunks, warnings = a1111_chunks(tokenizer, prompt)
    encoded = encode_chunks(encoder, chunks, clip_skip, layer)
    encoded.warnings = warnings
    return encoded
