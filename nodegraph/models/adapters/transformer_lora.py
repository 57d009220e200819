"""A LoRA file made ready for a diffusion transformer: kohya-ss files name the denoiser's layers `lora_unet_…` in
the family's original module paths, which each family's converter renames into the transformer's diffusers paths
(part "transformer"). diffusers/peft files (`transformer.…`) already match and pass through."""

from __future__ import annotations

import dataclasses

from torch import nn

from nodegraph.models.adapters.lora import LoraFile


def for_transformer(lora: LoraFile, model: nn.Module) -> LoraFile:
    """`lora` with its kohya `unet` part renamed for `model`'s family (SD3: models/adapters/sd3_lora.py)."""
    if lora.style != "kohya" or "unet" not in lora.parts:
        return lora
    kind = type(model).__name__
    if kind == "SD3Transformer2DModel":
        from nodegraph.models.adapters.sd3_lora import kohya_to_diffusers

        layers = kohya_to_diffusers(lora.parts["unet"], model.config.num_layers, lora.path)
    elif kind == "FluxTransformer2DModel":
        from nodegraph.models.adapters.flux_lora import kohya_to_diffusers as flux_names

        c = model.config
        layers = flux_names(lora.parts["unet"], c.num_attention_heads * c.attention_head_dim, lora.path)
    else:
        return lora  # no converter for this family: the matcher reports the names that fit nothing
    parts = {k: v for k, v in lora.parts.items() if k != "unet"}
    return dataclasses.replace(lora, parts={**parts, "transformer": layers})
