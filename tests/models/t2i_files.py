"""T2I-Adapter files for tests: diffusers' random T2IAdapter saved in the layout ComfyUI reads."""

from __future__ import annotations

import re


def tencentarc_layout(state: dict) -> dict:
    """diffusers' `adapter.body.L.resnets.B.*` / `adapter.body.L.in_conv.*` → TencentARC's `body.(2L+B).*`,
    the in_conv on the level's first block (written out here, independently of the loader's renaming)."""
    out = {}
    for key, value in state.items():
        if m := re.match(r"adapter\.body\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            key = f"body.{2 * int(m[1]) + int(m[2])}.{m[3]}"
        elif m := re.match(r"adapter\.body\.(\d+)\.in_conv\.(.*)", key):
            key = f"body.{2 * int(m[1])}.in_conv.{m[2]}"
        else:
            key = key.removeprefix("adapter.")
        out[key] = value.contiguous()
    return out
