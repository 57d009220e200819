"""Flux.1's transformer as Black Forest Labs ship it (`flux1-dev.safetensors`, `flux1-schnell.safetensors`, ComfyUI's
`diffusion_models/` files; `model.diffusion_model.` in front in all-in-one checkpoints), read into
nodegraph's FluxTransformer2DModel under diffusers' names.

Detection is by key, as diffusers' `infer_diffusers_model_type`: `double_blocks.0.img_attn.norm.key_norm.scale`
(either prefix); `guidance_in.*` present means a guidance-distilled model (dev). The renames are those of
diffusers' `convert_flux_transformer_checkpoint_to_diffusers`: fused projections are split by rows (a byte range
each, still a view of the mapped file): `img_attn.qkv` → `to_q`/`to_k`/`to_v`, `txt_attn.qkv` →
`add_{q,k,v}_proj`, a single block's `linear1` → `to_q`/`to_k`/`to_v`/`proj_mlp`; `final_layer.adaLN_modulation.1`
stores (shift, scale) where diffusers' `norm_out.linear` has (scale, shift), so its halves are swapped (the one
tensor read up front). The config comes from `config` (a Flux folder or repo) or from the shapes, with FLUX.1's
RoPE axes (16, 56, 56) when the heads are 128 wide.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from nodegraph.models.checkpoint import Entry
from nodegraph.models.errors import CheckpointError

PREFIXES = ("", "model.diffusion_model.")
DETECTION_KEY = "double_blocks.0.img_attn.norm.key_norm.scale"
_PLAIN = {  # BFL name → diffusers name, for whole tensors (suffix .weight / .bias / .scale → .weight kept below)
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "txt_in": "context_embedder", "img_in": "x_embedder", "final_layer.linear": "proj_out",
}
_DOUBLE = {  # inside double_blocks.N. → transformer_blocks.N.
    "img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
    "img_attn.norm.query_norm": "attn.norm_q", "img_attn.norm.key_norm": "attn.norm_k",
    "txt_attn.norm.query_norm": "attn.norm_added_q", "txt_attn.norm.key_norm": "attn.norm_added_k",
    "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2",
}
_SINGLE = {  # inside single_blocks.N. → single_transformer_blocks.N.
    "modulation.lin": "norm.linear", "norm.query_norm": "attn.norm_q", "norm.key_norm": "attn.norm_k",
    "linear2": "proj_out",
}
_FUSED_QKV = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
              "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}


def detect_flux_file(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The key prefix of a BFL-layout Flux transformer file, or None for any other file."""
    return next((p for p in PREFIXES if p + DETECTION_KEY in shapes), None)


def row_range(entry: Entry, start: int, stop: int) -> Entry:
    """Rows [start, stop) of a stored tensor (2-D weight or 1-D bias), as an Entry of its own: a byte range of
    the same file, or a view of an already loaded tensor."""
    shape = (stop - start, *entry.shape[1:])
    if entry.tensor is not None:
        return dataclasses.replace(entry, shape=shape, tensor=entry.tensor[start:stop])
    row_bytes = (entry.end - entry.start) // entry.shape[0]
    return dataclasses.replace(entry, shape=shape, start=entry.start + start * row_bytes,
                               end=entry.start + stop * row_bytes)


def _halves_swapped(entry: Entry) -> Entry:
    """(shift, scale) rows → (scale, shift): read the tensor (one (2·D, D) matrix) and swap its halves."""
    if entry.tensor is not None:
        tensor = entry.tensor
    else:
        with open(entry.local, "rb") as f:
            f.seek(entry.start)
            data = bytearray(f.read(entry.end - entry.start))
        tensor = torch.frombuffer(data, dtype=entry.dtype).reshape(entry.shape)
    first, second = tensor.chunk(2, dim=0)
    return dataclasses.replace(entry, local=None, start=0, end=0, tensor=torch.cat([second, first]))


def _split(out: dict[str, Entry], entry: Entry, suffix: str, names: tuple[str, ...], sizes: tuple[int, ...]):
    start = 0
    for name, size in zip(names, sizes):
        out[f"{name}.{suffix}"] = row_range(entry, start, start + size)
        start += size


def flux_entries(entries: dict[str, Entry], prefix: str) -> dict[str, Entry]:
    """The file's tensors under diffusers' names (fused projections split, final modulation halves swapped);
    keys the renames do not know are kept as they are, so the strict load names them. With a prefix (an
    all-in-one checkpoint) only the transformer's keys are read: the text encoders and VAE beside it are not."""
    out: dict[str, Entry] = {}
    for key, entry in entries.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        stem, _, suffix = key.rpartition(".")
        suffix = "weight" if suffix == "scale" else suffix  # RMSNorm scales are diffusers' `.weight`
        if stem in _PLAIN:
            out[f"{_PLAIN[stem]}.{suffix}"] = entry
        elif stem == "final_layer.adaLN_modulation.1":
            out[f"norm_out.linear.{suffix}"] = _halves_swapped(entry)
        elif m := re.fullmatch(r"double_blocks\.(\d+)\.(.+)", stem):
            block, part = f"transformer_blocks.{m[1]}.", m[2]
            if part in _FUSED_QKV:
                rows = entry.shape[0] // 3
                _split(out, entry, suffix, tuple(block + n for n in _FUSED_QKV[part]), (rows,) * 3)
            else:
                out[f"{block}{_DOUBLE.get(part, part)}.{suffix}"] = entry
        elif m := re.fullmatch(r"single_blocks\.(\d+)\.(.+)", stem):
            block, part = f"single_transformer_blocks.{m[1]}.", m[2]
            if part == "linear1":  # rows: q, k, v (D each), then the MLP's hidden (the rest)
                dim = entries[f"{prefix}single_blocks.{m[1]}.linear2.weight"].shape[0]
                names = tuple(block + n for n in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"))
                _split(out, entry, suffix, names, (dim, dim, dim, entry.shape[0] - 3 * dim))
            else:
                out[f"{block}{_SINGLE.get(part, part)}.{suffix}"] = entry
        else:
            out[key] = entry
    return out


def _count(shapes, pattern: str) -> int:
    found = {int(m[1]) for k in shapes if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def inferred_config(shapes: dict[str, tuple[int, ...]], shown: str) -> dict[str, Any]:
    """diffusers' config.json values the shapes (diffusers' names) tell; FLUX.1's RoPE axes for 128-wide heads."""
    dim, in_channels = shapes["x_embedder.weight"]
    head_dim = shapes["transformer_blocks.0.attn.norm_q.weight"][0]
    if head_dim != 128:
        raise CheckpointError(f"{shown}: a Flux transformer with {head_dim}-wide heads is not FLUX.1's layout (128); "
                              f"pass the folder or repo of its diffusers config as `config`.")
    return dict(_class_name="FluxTransformer2DModel", patch_size=1, in_channels=in_channels,
                out_channels=shapes["proj_out.weight"][0], num_layers=_count(shapes, r"transformer_blocks\.(\d+)\."),
                num_single_layers=_count(shapes, r"single_transformer_blocks\.(\d+)\."),
                attention_head_dim=head_dim, num_attention_heads=dim // head_dim,
                joint_attention_dim=shapes["context_embedder.weight"][1],
                pooled_projection_dim=shapes["time_text_embed.text_embedder.linear_1.weight"][1],
                guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in shapes,
                axes_dims_rope=[16, 56, 56])


def flux_file_config(ckpt, name: str) -> dict[str, Any]:
    """`read_config` for a Flux transformer file (inferred from the shapes, no weights read)."""
    if name != "transformer":
        raise CheckpointError(f"{ckpt.path} holds a Flux transformer alone, which has no `{name}`.")
    entries = flux_entries(ckpt.entries, detect_flux_file(ckpt.shapes))
    return inferred_config({k: e.shape for k, e in entries.items()}, str(ckpt.path))


def load_flux_file(ckpt, name: str, dtype: torch.dtype, device: torch.device, config: str | None,
                   store: str | None = None):
    """The FluxTransformer2DModel of a BFL-layout file (a `CheckpointFile`); `config`: a Flux folder or repo
    whose transformer config replaces the one inferred from the shapes; `store` as for Z-Image files."""
    from nodegraph.models.config import parse_config
    from nodegraph.models.flux_transformer import FluxTransformer2DModel, FluxTransformerConfig
    from nodegraph.models.single_file.z_image import _component_config, install

    shown = str(ckpt.path)
    if name != "transformer":
        from nodegraph.models.single_file.text_files import all_in_one_part, load_text_file

        if (part := all_in_one_part(ckpt, name)) is not None:  # an all-in-one checkpoint's CLIP-L or T5
            return load_text_file(part, name, dtype, device, config, store)
        hint = " (the tokenizer is not in the file: pass the Flux folder or repo holding it)" \
            if name.startswith("tokenizer") else ""
        raise CheckpointError(f"{shown} holds a Flux transformer alone, not a `{name}`{hint}; pass it as "
                              f"`transformer`.")
    entries = flux_entries(ckpt.entries, detect_flux_file(ckpt.shapes))
    if config:
        raw, where = _component_config(config, "transformer")
    else:
        raw, where = inferred_config({k: e.shape for k, e in entries.items()}, shown), \
            f"the configuration inferred from {shown}"
    with torch.device("meta"):
        model = FluxTransformer2DModel(parse_config(FluxTransformerConfig, raw, where))
    return install(model, entries, dtype, device, "the Flux transformer of its config", store)
