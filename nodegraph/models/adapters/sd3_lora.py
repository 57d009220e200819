"""SD3 / SD3.5 LoRAs in kohya-ss's layout (sd-scripts' `lora_sd3`: `lora_unet_` + Stability AI's module paths
with "_" for ".", e.g. `lora_unet_joint_blocks_3_x_block_attn_qkv`) → the transformer's diffusers module paths.

The renames are those of the single-file converter (`single_file/sd3.py`, after diffusers'
`convert_sd3_transformer_checkpoint_to_diffusers`). A LoRA on a fused `qkv` projection (down A (r, D), up B (3·D, r))
is three LoRAs with the same A and B's row thirds — exact, since B·A's rows split the same way. Where SAI stores
(shift, scale) and diffusers (scale, shift) (the final layer's and the last context block's modulation), B's
halves are swapped. diffusers/peft files (`transformer.transformer_blocks.0.attn.to_q.lora_A.weight`) already use
diffusers' paths and need nothing here.
"""

from __future__ import annotations

import re

import torch

from nodegraph.models.adapters.lora import LoraLayer
from nodegraph.models.errors import CheckpointError

_PLAIN = {  # SAI module path (kohya's "_" form) → diffusers path ("_" form too; the matcher compares that form)
    "x_embedder_proj": "pos_embed_proj", "t_embedder_mlp_0": "time_text_embed_timestep_embedder_linear_1",
    "t_embedder_mlp_2": "time_text_embed_timestep_embedder_linear_2",
    "y_embedder_mlp_0": "time_text_embed_text_embedder_linear_1",
    "y_embedder_mlp_2": "time_text_embed_text_embedder_linear_2",
    "context_embedder": "context_embedder", "final_layer_linear": "proj_out",
    "final_layer_adaLN_modulation_1": "norm_out_linear",
}
_BLOCK = {  # after joint_blocks_N_
    "x_block_attn_proj": "attn_to_out_0", "context_block_attn_proj": "attn_to_add_out",
    "x_block_attn2_proj": "attn2_to_out_0", "x_block_adaLN_modulation_1": "norm1_linear",
    "context_block_adaLN_modulation_1": "norm1_context_linear",
    "x_block_mlp_fc1": "ff_net_0_proj", "x_block_mlp_fc2": "ff_net_2",
    "context_block_mlp_fc1": "ff_context_net_0_proj", "context_block_mlp_fc2": "ff_context_net_2",
}
_FUSED = {"x_block_attn_qkv": ("attn_to_q", "attn_to_k", "attn_to_v"),
          "context_block_attn_qkv": ("attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj"),
          "x_block_attn2_qkv": ("attn2_to_q", "attn2_to_k", "attn2_to_v")}


def _swapped(layer: LoraLayer) -> LoraLayer:
    first, second = layer.up.chunk(2, dim=0)
    return LoraLayer(layer.down, torch.cat([second, first]), layer.alpha)


def kohya_to_diffusers(layers: dict[str, LoraLayer], num_layers: int, path: str) -> dict[str, LoraLayer]:
    """kohya SD3 layer names → the transformer's diffusers paths ("_"-joined), fused qkv split into q, k, v;
    `num_layers`: the transformer's joint blocks (the last one's context modulation is stored swapped)."""
    out: dict[str, LoraLayer] = {}
    unknown = []
    for name, layer in layers.items():
        if name in _PLAIN:
            out[_PLAIN[name]] = _swapped(layer) if name == "final_layer_adaLN_modulation_1" else layer
            continue
        m = re.fullmatch(r"joint_blocks_(\d+)_(.+)", name)
        if m is None or (m[2] not in _BLOCK and m[2] not in _FUSED):
            unknown.append(name)
            continue
        block, part = f"transformer_blocks_{m[1]}_", m[2]
        if part in _FUSED:
            rows = layer.up.shape[0] // 3
            for i, target in enumerate(_FUSED[part]):
                out[block + target] = LoraLayer(layer.down, layer.up[i * rows:(i + 1) * rows], layer.alpha)
        elif part == "context_block_adaLN_modulation_1" and int(m[1]) == num_layers - 1:
            out[block + _BLOCK[part]] = _swapped(layer)
        else:
            out[block + _BLOCK[part]] = layer
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3])
        raise CheckpointError(f"{path}: {len(unknown)} kohya layers are not SD3 transformer layers (e.g. {shown}); "
                              f"is this LoRA for another model family?")
    return out
