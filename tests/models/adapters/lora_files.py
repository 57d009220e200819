"""Random LoRA files written the way kohya-ss and diffusers/peft write them, for the tiny SD pipeline.

Layer names and shapes come from the diffusers models themselves (the oracle side), never from nodegraph.
Magnitudes are chosen so the LoRA visibly changes the image (the tests check that it does).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

UNET_LAYERS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "conv1",
               "conv2", "time_emb_proj", "conv_shortcut", "upsamplers.0.conv", "downsamplers.0.conv")
TEXT_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def lora_targets(folder: Path) -> dict[str, dict[str, nn.Module]]:
    """{"unet": {path: layer}, "text_encoder": {path: layer}}: the layers the test LoRAs adapt."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    te = CLIPTextModel.from_pretrained(folder / "text_encoder")
    return {
        "unet": {p: m for p, m in unet.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                 and p.endswith(UNET_LAYERS) and p.startswith(("down_blocks", "mid_block", "up_blocks"))},
        "text_encoder": {p.removeprefix("text_model."): m for p, m in te.named_modules()
                         if isinstance(m, nn.Linear) and p.endswith(TEXT_LAYERS)},
    }


def random_pair(layer: nn.Module, rank: int, generator: torch.Generator, gain: float):
    if isinstance(layer, nn.Conv2d):
        down = torch.randn(rank, layer.in_channels, *layer.kernel_size, generator=generator)
        up = torch.randn(layer.out_channels, rank, 1, 1, generator=generator)
        fan_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
    else:
        down = torch.randn(rank, layer.in_features, generator=generator)
        up = torch.randn(layer.out_features, rank, generator=generator)
        fan_in = layer.in_features
    return down / fan_in ** 0.5, up * gain / rank ** 0.5


def write_kohya(path: Path, targets, seed: int, rank: int = 4, alpha: float = 2.0, gain: float = 0.6) -> Path:
    """`lora_unet_<path with _>.lora_down.weight` / `.lora_up.weight` / `.alpha` (scale alpha / rank)."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for part, prefix in (("unet", "lora_unet_"), ("text_encoder", "lora_te_text_model_")):
        for module_path, layer in targets[part].items():
            name = prefix + module_path.replace(".", "_")
            down, up = random_pair(layer, rank, g, gain)
            tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"] = down, up
            tensors[f"{name}.alpha"] = torch.tensor(alpha)
    save_file(tensors, path)
    return path


def write_peft(path: Path, targets, seed: int, rank: int = 4, gain: float = 0.3) -> Path:
    """diffusers' format: `unet.<path>.lora_A.weight` / `.lora_B.weight`, `text_encoder.text_model.<path>…`; no
    alpha and no metadata, which diffusers reads as alpha = rank (scale 1)."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for part, prefix in (("unet", "unet."), ("text_encoder", "text_encoder.text_model.")):
        for module_path, layer in targets[part].items():
            down, up = random_pair(layer, rank, g, gain)
            tensors[f"{prefix}{module_path}.lora_A.weight"] = down
            tensors[f"{prefix}{module_path}.lora_B.weight"] = up
    save_file(tensors, path)
    return path
