"""Flux.1 LoRAs in kohya-ss's layout (sd-scripts' `lora_flux`: `lora_unet_` + Black Forest Labs' module paths with
"_" for ".", e.g. `lora_unet_double_blocks_3_img_attn_qkv`, `lora_unet_single_blocks_7_linear1`) → the
transformer's diffusers module paths, as diffusers 0.42.1's `_convert_kohya_flux_lora_to_diffusers` renames them.

The renames are the single-file converter's (`single_file/flux.py`). A LoRA on a fused projection (down A (r, D),
up B (n·D, r)) is n LoRAs with the same A and B's row blocks — exact, since B·A's rows split the same way: the
double blocks' `qkv` into q, k, v; a single block's `linear1` into q, k, v (D rows each) and the MLP input (the
rest). The final layer's modulation is stored (shift, scale) where diffusers has (scale, shift), so B's halves are
swapped. diffusers/peft files (`transformer.transformer_blocks.0.attn.to_q.lora_A.weight`) already use diffusers'
paths.

One difference from diffusers, on purpose: diffusers 0.42.1 renames kohya's embedder and final-layer LoRAs
(`img_in`, `txt_in`, `time_in`, `vector_in`, `guidance_in`, `final_layer`) to names without its `transformer.`
prefix, so `load_lora_weights` drops them without a word (measured on a tiny model: the image does not move).
They are applied here, with their alpha, as kohya-ss trained them and as ComfyUI applies them.
"""

from __future__ import annotations

import re

import torch

from nodegraph.models.adapters.lora import LoraLayer
from nodegraph.models.errors import CheckpointError

_PLAIN = {  # BFL module path (kohya's "_" form) → diffusers path ("_" form; the matcher compares that form)
    "img_in": "x_embedder", "txt_in": "context_embedder",
    "time_in_in_layer": "time_text_embed_timestep_embedder_linear_1",
    "time_in_out_layer": "time_text_embed_timestep_embedder_linear_2",
    "vector_in_in_layer": "time_text_embed_text_embedder_linear_1",
    "vector_in_out_layer": "time_text_embed_text_embedder_linear_2",
    "guidance_in_in_layer": "time_text_embed_guidance_embedder_linear_1",
    "guidance_in_out_layer": "time_text_embed_guidance_embedder_linear_2",
}
_FINAL = {"final_layer_linear": "proj_out", "final_layer_adaLN_modulation_1": "norm_out_linear"}
_DOUBLE = {  # after double_blocks_N_ → transformer_blocks_N_
    "img_attn_proj": "attn_to_out_0", "txt_attn_proj": "attn_to_add_out",
    "img_mlp_0": "ff_net_0_proj", "img_mlp_2": "ff_net_2",
    "txt_mlp_0": "ff_context_net_0_proj", "txt_mlp_2": "ff_context_net_2",
    "img_mod_lin": "norm1_linear", "txt_mod_lin": "norm1_context_linear",
}
_DOUBLE_FUSED = {"img_attn_qkv": ("attn_to_q", "attn_to_k", "attn_to_v"),
                 "txt_attn_qkv": ("attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj")}
_SINGLE = {"linear2": "proj_out", "modulation_lin": "norm_linear"}  # after single_blocks_N_
_SINGLE_FUSED = ("attn_to_q", "attn_to_k", "attn_to_v", "proj_mlp")  # linear1's rows: D, D, D, the rest


def _split(layer: LoraLayer, sizes: list[int]) -> list[LoraLayer]:
    """One LoRA on a fused projection → one per part: A shared, B's rows in blocks of `sizes`."""
    return [LoraLayer(layer.down, up, layer.alpha) for up in torch.split(layer.up, sizes, dim=0)]


def kohya_to_diffusers(layers: dict[str, LoraLayer], dim: int, path: str) -> dict[str, LoraLayer]:
    """kohya Flux layer names → the transformer's diffusers paths ("_"-joined), fused projections split;
    `dim`: the transformer's width (heads × head_dim), the size of q, k and v in a single block's `linear1`."""
    out: dict[str, LoraLayer] = {}
    unknown = []
    for name, layer in layers.items():
        if name in _PLAIN:
            out[_PLAIN[name]] = layer
        elif name in _FINAL:
            up = layer.up
            if name == "final_layer_adaLN_modulation_1":
                first, second = up.chunk(2, dim=0)
                up = torch.cat([second, first])
            out[_FINAL[name]] = LoraLayer(layer.down, up, layer.alpha)
        elif m := re.fullmatch(r"double_blocks_(\d+)_(.+)", name):
            block, part = f"transformer_blocks_{m[1]}_", m[2]
            if part in _DOUBLE_FUSED:
                rows = layer.up.shape[0] // 3
                out.update({block + t: piece for t, piece in zip(_DOUBLE_FUSED[part], _split(layer, [rows] * 3))})
            elif part in _DOUBLE:
                out[block + _DOUBLE[part]] = layer
            else:
                unknown.append(name)
        elif m := re.fullmatch(r"single_blocks_(\d+)_(.+)", name):
            block, part = f"single_transformer_blocks_{m[1]}_", m[2]
            if part == "linear1":
                sizes = [dim, dim, dim, layer.up.shape[0] - 3 * dim]
                out.update({block + t: piece for t, piece in zip(_SINGLE_FUSED, _split(layer, sizes))})
            elif part in _SINGLE:
                out[block + _SINGLE[part]] = layer
            else:
                unknown.append(name)
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3])
        raise CheckpointError(f"{path}: {len(unknown)} kohya layers are not Flux transformer layers (e.g. {shown}); "
                              f"is this LoRA for another model family?")
    return out
