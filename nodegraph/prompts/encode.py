"""Prompt → CLIP hidden states, in the two syntaxes TextEncode offers.

* plain: diffusers' `encode_prompt` — one 77-token sequence, longer prompts cut (the dropped words are named).
* a1111: weighted 75-token chunks (`a1111.py`), each encoded on its own, weighted as A1111 does
  ("Original" emphasis: scale every position's hidden state by its weight, then rescale the chunk so its
  overall mean is what it was before weighting), and concatenated along the tokens: (1, 77·chunks, C).

`clip_skip` follows diffusers: 0 = off; k skips the last k encoder layers and still applies the final layer norm,
`final_layer_norm(hidden_states[-(k + 1)])`. A1111's "Clip skip: n" is diffusers' (and nodegraph's) n − 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodegraph.prompts.a1111 import chunk_tokens, parse


@dataclass
class Encoded:
    hidden: Any  # torch.Tensor (1, tokens, C); torch is imported only when encoding
    warnings: list[str] = field(default_factory=list)


def clip_hidden(encoder, ids, clip_skip: int = 0):
    """(1, 77) token ids → (1, 77, C) hidden states of a CLIPTextModel, `clip_skip` layers from the end."""
    import torch

    layers = encoder.config.num_hidden_layers
    if not 0 <= clip_skip < layers:
        raise ValueError(f"`clip_skip` is {clip_skip}, but this text encoder has {layers} layers; use 0 (off) to "
                         f"{layers - 1}")
    with torch.no_grad():
        if clip_skip == 0:
            return encoder(ids.to(encoder.device))[0]  # last layer, after the final layer norm
        out = encoder(ids.to(encoder.device), output_hidden_states=True)
        return encoder.final_layer_norm(out.hidden_states[-(clip_skip + 1)])  # hidden_states[0]: embeddings


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


def encode_plain(encoder, tokenizer, prompt: str, clip_skip: int = 0) -> Encoded:
    prompt = expand_embedding_tokens(prompt, tokenizer)
    length = tokenizer.model_max_length
    ids = tokenizer([prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    full = tokenizer([prompt], padding="longest", return_tensors="pt").input_ids
    warnings = []
    if full.shape[-1] > ids.shape[-1]:  # same test and same cut as diffusers: drop everything past position 76
        dropped = tokenizer.batch_decode(full[:, length - 1:-1])[0]
        warnings.append(f"the prompt is longer than CLIP's {length} tokens, so these words were dropped: "
                        f"{dropped!r}; shorten it, or use `syntax: a1111` (prompt_syntax=a1111), which encodes "
                        f"long prompts in chunks")
    return Encoded(clip_hidden(encoder, ids, clip_skip), warnings)


def encode_a1111(encoder, tokenizer, prompt: str, clip_skip: int = 0) -> Encoded:
    import torch

    parsed = parse(prompt)  # columns in warnings refer to the prompt as the user wrote it
    for fragment in parsed.fragments:
        fragment.text = expand_embedding_tokens(fragment.text, tokenizer)
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks = chunk_tokens(parsed, lambda text: tokenizer(text, add_special_tokens=False).input_ids,
                          bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
                          comma=comma if comma != tokenizer.unk_token_id else None)
    states = []
    for chunk in chunks:
        z = clip_hidden(encoder, torch.tensor([chunk.ids]), clip_skip)  # (1, 77, C)
        if any(w != 1.0 for w in chunk.weights):
            weights = torch.tensor(chunk.weights, dtype=z.dtype, device=z.device)  # (77,)
            original_mean = z.mean()
            z = z * weights[None, :, None]
            z = z * (original_mean / z.mean())
        states.append(z)
    return Encoded(torch.cat(states, dim=1), parsed.warnings)  # (1, 77·chunks, C)
