"""The VAE of an LDM/SGM checkpoint (`first_stage_model.*`, or a VAE-only file) → AutoencoderKL keys.

Original names: `encoder.down.i.block.j` (resnets), `.downsample.conv`, `mid.block_1/2`, `mid.attn_1` (1×1
conv q/k/v/proj_out, which diffusers holds as Linear), `norm_out`; the decoder's `up.k` is numbered from the
lowest resolution, so diffusers' `up_blocks.i` is `up.(n-1-i)`.
"""

from __future__ import annotations

import re

from nodegraph.models.single_file.plan import Plan, Take

_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def diffusers_name(key: str, levels: int) -> tuple[str, bool] | None:
    """(diffusers name, is a 1×1-conv attention weight) of VAE key `key` (prefix stripped), or None."""
    key = key.replace(".nin_shortcut.", ".conv_shortcut.")
    if m := re.match(r"^(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(\w+)$", key):
        return f"{m[1]}.{'conv_norm_out' if m[2] == 'norm_out' else m[2]}.{m[3]}", False
    if m := re.match(r"^(quant_conv|post_quant_conv)\.(\w+)$", key):
        return key, False
    if m := re.match(r"^(encoder|decoder)\.mid\.block_([12])\.(.+)$", key):
        return f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{m[3]}", False
    if m := re.match(r"^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(\w+)$", key):
        return f"{m[1]}.mid_block.attentions.0.{_ATTENTION[m[2]]}.{m[3]}", m[2] != "norm"
    if m := re.match(r"^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$", key):
        return f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{m[3]}", False
    if m := re.match(r"^encoder\.down\.(\d+)\.downsample\.conv\.(\w+)$", key):
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}", False
    if m := re.match(r"^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$", key):
        return f"decoder.up_blocks.{levels - 1 - int(m[1])}.resnets.{m[2]}.{m[3]}", False
    if m := re.match(r"^decoder\.up\.(\d+)\.upsample\.conv\.(\w+)$", key):
        return f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}", False
    return None


def plan_vae(keys: list[str], prefix: str, levels: int) -> Plan:
    """The plan for a VAE under `prefix` ("" for a VAE-only file); `levels` = len(block_out_channels)."""
    plan: Plan = {}
    for key in (k for k in keys if k.startswith(prefix)):
        found = diffusers_name(key[len(prefix):], levels)
        if found is not None:
            plan[found[0]] = Take(key, squeeze=found[1])
    return plan
