"""Test fixtures: write a diffusers pipeline folder as one file in the original LDM/SGM layout.

This is the inverse of the conversion under test, written independently from the original layouts (CompVis
`ldm` and Stability `sgm` module names, as listed in shared/notes/reference/single-file-keys-*.txt). Each fixture
is checked by diffusers itself before it is trusted: `from_single_file(file, config=folder)` must give the same
image (or tensors) as `from_pretrained(folder)`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet(rest: str) -> str:
    module, _, leaf = rest.partition(".")
    return f"{_RESNET[module]}.{leaf}"


def unet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """diffusers UNet2DConditionModel state dict → `model.diffusion_model.*` keys."""
    n = layers_per_block + 1
    up_has_attention = {int(m[1]) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        if head in _TOP:
            new = f"{_TOP[head]}.{leaf}"
        elif m := re.match(r"^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key):
            new = f"input_blocks.{1 + int(m[1]) * n + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", key):
            new = f"input_blocks.{1 + int(m[1]) * n + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$", key):
            new = f"input_blocks.{1 + int(m[1]) * n + layers_per_block}.0.op.{m[2]}"
        elif m := re.match(r"^mid_block\.resnets\.(\d)\.(.+)$", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"^mid_block\.attentions\.0\.(.+)$", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key):
            new = f"output_blocks.{int(m[1]) * n + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", key):
            new = f"output_blocks.{int(m[1]) * n + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$", key):
            slot = 2 if int(m[1]) in up_has_attention else 1
            new = f"output_blocks.{int(m[1]) * n + layers_per_block}.{slot}.conv.{m[2]}"
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(state: dict[str, torch.Tensor], levels: int, prefix: str = "first_stage_model.") -> dict:
    out = {}
    for key, value in state.items():
        key2 = key.replace("conv_shortcut", "nin_shortcut")
        if m := re.match(r"^(encoder|decoder)\.conv_norm_out\.(\w+)$", key2):
            new = f"{m[1]}.norm_out.{m[2]}"
        elif m := re.match(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key2):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)$", key2):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key2):
            new = f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)$", key2):
            new = f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)$", key2):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)"
                           r"\.(\w+)$", key2):
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
            if m[2] != "group_norm" and m[3] == "weight":
                value = value.reshape(*value.shape, 1, 1)  # the LDM VAE attention is made of 1×1 convs
        else:
            new = key2  # conv_in, conv_out, quant_conv, post_quant_conv
        out[prefix + new] = value
    return out


def clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """transformers 5 CLIPTextModel (flattened) → `<prefix>text_model.*`, with the position ids real files carry."""
    out = {f"{prefix}text_model.{k}": v for k, v in state.items()}
    n = state["embeddings.position_embedding.weight"].shape[0]
    out[f"{prefix}text_model.embeddings.position_ids"] = torch.arange(n).unsqueeze(0)
    return out


_OPEN_CLIP = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
              "self_attn.out_proj": "attn.out_proj"}


def open_clip_to_ldm(state: dict[str, torch.Tensor], prefix: str, projection: torch.Tensor) -> dict:
    """transformers CLIPTextModel → OpenCLIP names under `prefix`; `projection` [d, proj] is stored as OpenCLIP's
    `text_projection` (applied as x @ P)."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
           prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
           prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
           prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
           prefix + "text_projection": projection, prefix + "logit_scale": torch.tensor(4.6)}
    state.pop("text_projection.weight", None)
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    for n in layers:
        src, dst = f"encoder.layers.{n}.", f"{prefix}transformer.resblocks.{n}."
        for leaf in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{leaf}"] = torch.cat(
                [state.pop(f"{src}self_attn.{p}_proj.{leaf}") for p in "qkv"])
            for ours, theirs in _OPEN_CLIP.items():
                out[f"{dst}{theirs}.{leaf}"] = state.pop(f"{src}{ours}.{leaf}")
    assert not state, f"unconverted text encoder keys: {sorted(state)}"
    return out


def write_sd_file(folder: Path, path: Path, *, open_clip: bool = False, dtype=torch.float32) -> Path:
    """Write the SD1.x (CLIP-L) or SD2.x (OpenCLIP) pipeline in `folder` as one LDM-layout safetensors file."""
    import json

    from safetensors.torch import load_file, save_file

    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    te = load_file(folder / "text_encoder" / "model.safetensors")
    state = {**unet_to_ldm(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"),
                           unet_config["layers_per_block"]),
             **vae_to_ldm(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"),
                          len(vae_config["block_out_channels"]))}
    if open_clip:
        width = te["embeddings.token_embedding.weight"].shape[1]
        projection = torch.randn(width, width, generator=torch.Generator().manual_seed(5))  # read by no model
        state.update(open_clip_to_ldm(te, "cond_stage_model.model.", projection))
    else:
        state.update(clip_to_ldm(te, "cond_stage_model.transformer."))
    state["alphas_cumprod"] = torch.linspace(0.99, 0.01, 1000)  # real files carry the LDM's diffusion tables
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(state, path)
    return path


def write_sdxl_file(folder: Path, path: Path, refiner: bool = False) -> Path:
    """Write the SDXL base (or refiner) pipeline in `folder` as one SGM-layout safetensors file: CLIP-L under
    `conditioner.embedders.0.transformer.`, OpenCLIP bigG under `conditioner.embedders.1.model.` (the refiner's
    only encoder is `embedders.0.model.`)."""
    import json

    from safetensors.torch import load_file, save_file

    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state = {**unet_to_ldm(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"),
                           unet_config["layers_per_block"]),
             **vae_to_ldm(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"),
                          len(vae_config["block_out_channels"]))}
    te2 = load_file(folder / "text_encoder_2" / "model.safetensors")
    projection = te2["text_projection.weight"].t()  # OpenCLIP applies it as x @ P
    if refiner:
        state.update(open_clip_to_ldm(te2, "conditioner.embedders.0.model.", projection))
    else:
        state.update(clip_to_ldm(load_file(folder / "text_encoder" / "model.safetensors"),
                                 "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(te2, "conditioner.embedders.1.model.", projection))
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path
