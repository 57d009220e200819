"""ControlNets saved as one file: the original layout (lllyasviel's `control_model.*` or root keys:
`input_hint_block`, `zero_convs`, `middle_block_out`, and the UNet encoder's LDM names) or diffusers' own names.

The correspondence is the one diffusers' `convert_controlnet_checkpoint` documents: `input_hint_block.0` is the
embedding's conv_in, `.2, .4, …` its blocks, the last one its conv_out (SiLUs sit at the odd indices);
`zero_convs.i.0` is `controlnet_down_blocks.i`; `middle_block_out.0` is `controlnet_mid_block`; the rest is
named as in the UNet (`single_file/ldm_unet.py`). The config comes from `config` (a diffusers ControlNet folder
or hub repo) or from the built-in UNet config of the family the weights' text width names, with the image
embedding's widths read from the file.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from nodegraph.models.base import install_weights
from nodegraph.models.errors import CheckpointError
from nodegraph.models.single_file import ldm_unet
from nodegraph.models.single_file.plan import Plan, Take, check, read

ORIGINAL_PREFIX = "control_model."
_HINT = re.compile(r"^input_hint_block\.(\d+)\.(weight|bias)$")
# text width of the first cross-attention → built-in family config (SD1: CLIP-L, SD2: OpenCLIP-H, SDXL: both)
_FAMILY_BY_TEXT_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl_base"}
_UNET_ONLY = ("up_block_types", "out_channels", "sample_size", "center_input_sample", "conv_out_kernel",
              "_diffusers_version")


def load_controlnet_file(path: str | os.PathLike, *, config: str | None = None, dtype: torch.dtype = torch.float32,
                         device: torch.device | str = "cpu", allow_pickle: bool = False):
    """A ControlNetModel from one `.safetensors` (or, with `allow_pickle`, `.pth`/`.ckpt`) file."""
    from nodegraph.models.single_file.loader import opened

    ckpt = opened(path, allow_pickle)
    model, plan = planned_controlnet(ckpt.shapes, str(ckpt.path), config)
    install_weights(model, read(plan, ckpt.entries, model, dtype, torch.device(device)))
    return model.eval()


def planned_controlnet(shapes: dict[str, tuple[int, ...]], shown: str, config: str | None = None):
    """(ControlNetModel on the meta device, checked plan) for a file with these keys and shapes; no weights read."""
    from nodegraph.models.controlnet import ControlNetModel, parse_controlnet_config

    diffusers_layout = "controlnet_cond_embedding.conv_in.weight" in shapes
    prefix = ORIGINAL_PREFIX if any(k.startswith(ORIGINAL_PREFIX) for k in shapes) else ""
    if not diffusers_layout and f"{prefix}input_hint_block.0.weight" not in shapes:
        raise CheckpointError(f"{shown} is not a ControlNet: it has neither `control_model.input_hint_block.*` "
                              "(original layout) nor `controlnet_cond_embedding.*` (diffusers) keys.")
    raw = _config(shapes, prefix, diffusers_layout, config, shown)
    parsed = parse_controlnet_config(raw, f"the ControlNet config for {shown}")
    with torch.device("meta"):
        model = ControlNetModel(parsed)
    if diffusers_layout:
        plan: Plan = {k: Take(k) for k in shapes}
    else:
        plan = plan_original(list(shapes), prefix, parsed.layers_per_block)
    check(plan, [k for k in shapes if k.startswith(prefix)], shapes, model, "a ControlNet of its config", shown)
    return model, plan


def plan_original(keys: list[str], prefix: str, layers_per_block: int) -> Plan:
    """Model key → file key for a ControlNet in the original layout; unknown keys stay out of the plan (and are
    then reported as unused by `check`)."""
    hint = sorted(int(m[1]) for k in keys if (m := _HINT.match(k[len(prefix):])) and m[2] == "weight")
    last = hint[-1] if hint else -1
    plan: Plan = {}
    for key in (k for k in keys if k.startswith(prefix)):
        name = original_name(key[len(prefix):], layers_per_block, last)
        if name is not None:
            plan[name] = Take(key)
    return plan


def original_name(key: str, layers_per_block: int, last_hint: int) -> str | None:
    if m := _HINT.match(key):
        index = int(m[1])
        if index == 0:
            return f"controlnet_cond_embedding.conv_in.{m[2]}"
        if index == last_hint:
            return f"controlnet_cond_embedding.conv_out.{m[2]}"
        return f"controlnet_cond_embedding.blocks.{index // 2 - 1}.{m[2]}" if index % 2 == 0 else None
    if m := re.match(r"^zero_convs\.(\d+)\.0\.(weight|bias)$", key):
        return f"controlnet_down_blocks.{m[1]}.{m[2]}"
    if m := re.match(r"^middle_block_out\.0\.(weight|bias)$", key):
        return f"controlnet_mid_block.{m[1]}"
    return ldm_unet.diffusers_name(key, layers_per_block)


def _config(shapes: dict[str, tuple[int, ...]], prefix: str, diffusers_layout: bool, config: str | None,
            shown: str) -> dict[str, Any]:
    if config:
        from nodegraph.models.loading import read_config

        return read_config(config, "controlnet")
    if diffusers_layout:
        raise CheckpointError(f"{shown} holds a ControlNet in diffusers' naming but no config: pass its diffusers "
                              "folder (config.json) or hub repo as `config`, or load the folder itself.")
    from nodegraph.models.single_file.loader import builtin_config

    to_k = next((shape for k, shape in shapes.items() if k.startswith(prefix + "input_blocks.")
                 and k.endswith("attn2.to_k.weight")), None)
    family = _FAMILY_BY_TEXT_WIDTH.get(to_k[-1]) if to_k else None
    if family is None:
        raise CheckpointError(f"{shown}: cannot tell which model family this ControlNet is for (text width "
                              f"{to_k[-1] if to_k else 'unknown'}); pass its diffusers config folder as `config`.")
    unet = builtin_config(family)["unet"]
    widths, index = [], 0
    while f"{prefix}input_hint_block.{index}.weight" in shapes:
        # conv_in, then each pair's stride-2 conv (indices 4, 8, …) sets the next width; conv_out (4·pairs + 2) not
        if index == 0 or index % 4 == 0:
            widths.append(shapes[f"{prefix}input_hint_block.{index}.weight"][0])
        index += 2
    return {**{k: v for k, v in unet.items() if k not in _UNET_ONLY}, "_class_name": "ControlNetModel",
            "in_channels": shapes[f"{prefix}input_blocks.0.0.weight"][1],
            "conditioning_channels": shapes[f"{prefix}input_hint_block.0.weight"][1],
            "conditioning_embedding_out_channels": widths}
