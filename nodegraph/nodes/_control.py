"""Helpers of the ControlNet nodes (imported lazily: they touch loaded models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ControlEntry:
    """One ControlNet of a control chain, with what it needs at every step."""

    controlnet: Any
    image: Any  # (1, 3, H, W) in [0, 1], in the ControlNet's dtype
    strength: float
    start: float
    end: float


def check_family(controlnet, unet) -> None:
    """Refuse a ControlNet trained for another model family before any step runs."""
    from nodegraph.models.controlnet import controlnet_family

    def describe(config) -> str:
        kind = "SDXL" if config.addition_embed_type == "text_time" else "Stable Diffusion 1.x/2.x"
        width = config.per_block("cross_attention_dim")[-1]
        return f"{kind}, text width {width}, blocks {list(config.block_out_channels)}"

    if controlnet_family(controlnet.config) != controlnet_family(unet.config):
        raise ValueError(f"`controlnet` was made for another model family ({describe(controlnet.config)}) than "
                         f"`model` ({describe(unet.config)}): use a ControlNet trained for this model "
                         "(SD1.5 ControlNets with SD1.x, SDXL ones with graphs/sdxl_controlnet.yaml).")


def check_range(start: float, end: float) -> None:
    if start >= end:
        raise ValueError(f"`control_start` {start} must be below `control_end` {end}: the ControlNet acts on the "
                         f"steps in [start, end) of the schedule, e.g. start 0.0 and end 1.0 for all of them")
