"""Text encoders of LDM/SGM checkpoints → transformers' CLIPTextModel keys (transformers 5: no `text_model.`).

CLIP-L (SD1.x, SDXL's first encoder) is stored in transformers' own layout under a prefix. OpenCLIP (SD2.x's
ViT-H, SDXL's bigG) has its own names: `transformer.resblocks.N` with a fused `attn.in_proj_weight`
[3d, d] (rows q, k, v), `ln_1/ln_2`, `mlp.c_fc/c_proj`, `positional_embedding`, `ln_final` and a
`text_projection` applied as x @ P. Layers beyond the config's `num_hidden_layers` are not used: diffusers keeps
23 of ViT-H's 24 layers for SD2 (it reads the penultimate layer), and so does the built-in SD2 config.
"""

from __future__ import annotations

import re

from nodegraph.models.single_file.plan import Plan, Take

_OPEN_CLIP_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
                    "attn.out_proj": "self_attn.out_proj"}
# Present in many real files, read by no model: the CLIP position ids (a non-persistent buffer, often corrupted in
# merged models) and OpenCLIP's contrastive temperature.
IGNORED_SUFFIXES = ("embeddings.position_ids", "logit_scale")


def plan_clip(keys: list[str], prefix: str) -> tuple[Plan, list[str]]:
    """(plan, keys deliberately not used) for a CLIP-L text encoder stored under `prefix`."""
    plan: Plan = {}
    ignored = []
    for key in (k for k in keys if k.startswith(prefix)):
        if key.endswith(IGNORED_SUFFIXES):
            ignored.append(key)
        else:
            plan[key[len(prefix):].removeprefix("text_model.")] = Take(key)
    return plan, ignored


_OPEN_CLIP_TOP = {"positional_embedding": "embeddings.position_embedding.weight",
                  "token_embedding.weight": "embeddings.token_embedding.weight",
                  "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}


def plan_open_clip(keys: list[str], prefix: str, shapes: dict[str, tuple[int, ...]], layers: int,
                   projection: bool) -> tuple[Plan, list[str]]:
    """(plan, keys deliberately not used) for an OpenCLIP text tower under `prefix`. `layers`: the model's
    `num_hidden_layers` (later layers are not used); `projection`: whether the model has a `text_projection`."""
    plan: Plan = {}
    ignored = []
    for key in (k for k in keys if k.startswith(prefix)):
        rest = key[len(prefix):]
        layer = re.match(r"^transformer\.resblocks\.(\d+)\.(.+)$", rest)
        if rest.endswith(IGNORED_SUFFIXES) or (layer and int(layer[1]) >= layers) or \
                (rest == "text_projection" and not projection):
            ignored.append(key)
        elif layer and layer[2] in ("attn.in_proj_weight", "attn.in_proj_bias"):
            d = shapes[key][0] // 3  # rows [0, d) are q, [d, 2d) k, [2d, 3d) v
            leaf = layer[2].rpartition("_")[2]
            for i, name in enumerate("qkv"):
                plan[f"encoder.layers.{layer[1]}.self_attn.{name}_proj.{leaf}"] = Take(key, rows=(i * d, (i + 1) * d))
        elif layer:
            part, _, leaf = layer[2].rpartition(".")
            plan[f"encoder.layers.{layer[1]}.{_OPEN_CLIP_LAYER.get(part, part)}.{leaf}"] = Take(key)
        elif rest == "text_projection":
            plan["text_projection.weight"] = Take(key, transpose=True)
        else:
            plan[_OPEN_CLIP_TOP.get(rest, rest)] = Take(key)
    return plan, ignored
