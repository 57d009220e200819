"""Textual-inversion embeddings: new tokens whose input vectors were learned, used by writing the token in a prompt.

As diffusers' `load_textual_inversion` does, an n-vector embedding adds n tokens to the tokenizer (`<tok>`,
`<tok>_1`, … `<tok>_{n-1}`; the prompt names only `<tok>`, `prompts.encode.expand_embedding_tokens` spells out
the rest) with ids after the vocabulary, and the text encoder's token-embedding table gains those rows. Here both
are copies: the cached tokenizer and text encoder are left as they were (the encoder is a copy-on-write tree that
only owns its new embedding table).

Files: `.safetensors` holding one tensor (n, width) or (width,) (diffusers' `learned_embeds`, A1111's
`emb_params`), and A1111 `.pt` files (`string_to_param["*"]`) only when pickles are allowed (read with
`weights_only=True`). SDXL files (`clip_l` + `clip_g`) belong to SDXL's two encoders.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from nodegraph.models.adapters.patch import replace_modules
from nodegraph.models.errors import CheckpointError
from nodegraph.models.weight_files import read_safetensors_header


def read_embedding(path: str, allow_pickle: bool = False) -> tuple[str | None, dict[str, torch.Tensor]]:
    """(the token the file names, if any; {"": vectors (n, width)} or SDXL's {"clip_l": …, "clip_g": …})."""
    if not os.path.isfile(path):
        raise CheckpointError(f"embedding file {path!r} does not exist; give the path of a textual-inversion file")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError, safe_open

        read_safetensors_header(path, path)  # the header checked against spec/limits.py before safetensors reads it
        try:
            with safe_open(path, framework="pt") as f:
                keys = list(f.keys())
                if len(keys) != 1 and set(keys) != {"clip_l", "clip_g"}:  # refused from the header alone
                    raise CheckpointError(f"{path} holds {len(keys)} tensors ({', '.join(keys[:3])}…); a "
                                          f"textual-inversion file holds one (or SDXL's clip_l + clip_g). Is it a "
                                          f"LoRA or a model?")
                tensors = {k: f.get_tensor(k) for k in keys}
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable .safetensors file ({exc})") from None
        if set(tensors) == {"clip_l", "clip_g"}:
            return None, {k: _as_rows(v, path) for k, v in tensors.items()}
        (name, vectors), = tensors.items()
        return (None if name == "emb_params" else name), {"": _as_rows(vectors, path)}
    if path.endswith((".pt", ".bin")):
        if not allow_pickle:
            raise CheckpointError(f"{path} is a pickle (.pt), which can run code when loaded; convert it to "
                                  f".safetensors, or set `allow_pickle: true` if you trust it")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot be read as a textual-inversion file ({exc})") from None
        if isinstance(data, dict) and "string_to_param" in data:
            return data.get("name"), {"": _as_rows(data["string_to_param"]["*"], path)}
        if isinstance(data, dict) and len(data) == 1:
            (name, vectors), = data.items()
            return name, {"": _as_rows(vectors, path)}
        raise CheckpointError(f"{path}: not a textual-inversion file (expected A1111's string_to_param or one tensor)")
    raise CheckpointError(f"{path}: embeddings are read from .safetensors (or .pt with allow_pickle)")


def _as_rows(vectors, path: str) -> torch.Tensor:
    if not isinstance(vectors, torch.Tensor) or vectors.dim() not in (1, 2) or not vectors.is_floating_point():
        raise CheckpointError(f"{path}: the embedding is not a float tensor of shape (vectors, width)")
    return vectors.reshape(-1, vectors.shape[-1]) if vectors.dim() == 2 else vectors[None]  # (n, width)


def add_embedding(text_encoder: nn.Module, tokenizer, token: str, vectors: torch.Tensor, where: str):
    """(patched text encoder, tokenizer copy) knowing `token`; the arguments are not modified."""
    table = text_encoder.get_input_embeddings()  # nn.Embedding (vocab, width)
    if vectors.shape[-1] != table.embedding_dim:
        raise CheckpointError(f"{where}: the embedding is {vectors.shape[-1]} wide but this text encoder takes "
                              f"{table.embedding_dim}-wide token vectors; it was trained for another model "
                              f"(768: SD 1.x, 1024: SD 2.x, 768 + 1280: SDXL)")
    names = [token] + [f"{token}_{k}" for k in range(1, vectors.shape[0])]
    taken = [n for n in names if n in tokenizer.get_vocab()]
    if taken:
        raise CheckpointError(f"{where}: token {taken[0]!r} is already known to the tokenizer (a word, or an "
                              f"embedding loaded before); choose another `token`, e.g. <{token.strip('<>')}-emb>")
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_tokens(names)
    ids = tokenizer.convert_tokens_to_ids(names)
    rows = max(max(ids) + 1, table.num_embeddings)
    weight = torch.zeros(rows, table.embedding_dim, dtype=table.weight.dtype, device=table.weight.device)
    weight[:table.num_embeddings] = table.weight
    weight[ids] = vectors.to(weight)
    new_table = nn.Embedding(rows, table.embedding_dim, _weight=weight, _freeze=True)
    path = next(p for p, m in text_encoder.named_modules() if m is table)
    return replace_modules(text_encoder, {path: new_table}), tokenizer
