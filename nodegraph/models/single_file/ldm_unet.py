"""The UNet of an LDM/SGM checkpoint (`model.diffusion_model.*`) → nodegraph's UNet2DConditionModel keys.

The original UNet numbers its blocks flatly: `input_blocks.0` is conv_in, then each level has
`layers_per_block` (resnet [+ transformer]) entries and, except the last level, one downsampler; `output_blocks`
mirror that with one more entry per level and the upsampler inside the level's last entry. diffusers'
`convert_ldm_unet_checkpoint` documents the same correspondence. Transformer internals keep their names.
"""

from __future__ import annotations

import re

from nodegraph.models.single_file.plan import Plan, Take

PREFIX = "model.diffusion_model."
_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "out_layers.0": "norm2", "out_layers.3": "conv2",
           "emb_layers.1": "time_emb_proj", "skip_connection": "conv_shortcut"}
_FIXED = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
          "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2",
          "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}


def _resnet(rest: str) -> str:
    for old, new in _RESNET.items():
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def diffusers_name(key: str, layers_per_block: int) -> str | None:
    """The diffusers name of UNet key `key` (prefix stripped), or None when it is not a UNet weight we know."""
    head, _, leaf = key.rpartition(".")
    if head in _FIXED:
        return f"{_FIXED[head]}.{leaf}"
    if key.startswith("middle_block."):
        index, _, rest = key[len("middle_block."):].partition(".")
        slot = {"0": "resnets.0", "1": "attentions.0", "2": "resnets.1"}.get(index)
        return slot and f"mid_block.{slot}.{_resnet(rest) if slot.startswith('resnets') else rest}"
    m = re.match(r"^(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.+)$", key)
    if not m:
        return None
    kind, i, inner, rest = m[1], int(m[2]), int(m[3]), m[4]
    per_level = layers_per_block + 1
    if kind == "input_blocks":
        level, slot = divmod(i - 1, per_level)
        if slot == layers_per_block:  # the level's downsampler: input_blocks.i.0.op
            return f"down_blocks.{level}.downsamplers.0.conv.{rest.removeprefix('op.')}" if inner == 0 and \
                rest.startswith("op.") else None
        where = f"down_blocks.{level}"
    else:
        level, slot = divmod(i, per_level)
        where = f"up_blocks.{level}"
        if rest.startswith("conv.") and inner > 0:  # the upsampler follows the resnet (and transformer)
            return f"{where}.upsamplers.0.{rest}"
    if inner == 0:
        return f"{where}.resnets.{slot}.{_resnet(rest)}"
    if inner == 1:
        return f"{where}.attentions.{slot}.{rest}"
    return None


def plan_unet(keys: list[str], layers_per_block: int, ema: bool = False) -> tuple[Plan, list[str]]:
    """(plan, keys deliberately not used). With `ema`, weights come from the EMA copy (`model_ema.*`, named by
    the LDM key with the dots of its path removed, as diffusers' `extract_ema` reads it) instead of
    `model.diffusion_model.*`; without, the EMA copy is not used."""
    plan: Plan = {}
    for key in (k for k in keys if k.startswith(PREFIX)):
        name = diffusers_name(key[len(PREFIX):], layers_per_block)
        if name is not None:
            plan[name] = Take("model_ema." + "".join(key.split(".")[1:]) if ema else key)
    ema_keys = [k for k in keys if k.startswith("model_ema.")]
    ignored = [k for k in keys if k.startswith(PREFIX)] if ema else ema_keys
    return plan, ignored
