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


# kohya's names for SDXL follow sgm's UNet; this table is written out by hand from sgm's layout for the tiny SDXL
# base of tests/graphs/tiny_sdxl.py (layers_per_block 1: input block i = down block (i−1)//2, output block i = up
# block i//2), with the diffusers module each name means.
SDXL_KOHYA_UNET = {
    "input_blocks_0_0": "conv_in",
    "time_embed_0": "time_embedding.linear_1",
    "label_emb_0_2": "add_embedding.linear_2",
    "input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",
    "input_blocks_1_0_emb_layers_1": "down_blocks.0.resnets.0.time_emb_proj",
    "input_blocks_2_0_op": "down_blocks.0.downsamplers.0.conv",
    "input_blocks_3_0_skip_connection": "down_blocks.1.resnets.0.conv_shortcut",
    "input_blocks_3_1_proj_in": "down_blocks.1.attentions.0.proj_in",
    "input_blocks_3_1_transformer_blocks_0_attn1_to_q": "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "input_blocks_3_1_transformer_blocks_0_attn2_to_k": "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
    "input_blocks_3_1_transformer_blocks_0_ff_net_2": "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
    "input_blocks_5_0_out_layers_3": "down_blocks.2.resnets.0.conv2",
    "input_blocks_5_1_transformer_blocks_1_attn2_to_v": "down_blocks.2.attentions.0.transformer_blocks.1.attn2.to_v",
    "input_blocks_5_1_transformer_blocks_1_attn1_to_out_0":
        "down_blocks.2.attentions.0.transformer_blocks.1.attn1.to_out.0",
    "middle_block_0_in_layers_2": "mid_block.resnets.0.conv1",
    "middle_block_1_transformer_blocks_1_ff_net_0_proj": "mid_block.attentions.0.transformer_blocks.1.ff.net.0.proj",
    "middle_block_2_emb_layers_1": "mid_block.resnets.1.time_emb_proj",
    "output_blocks_0_0_skip_connection": "up_blocks.0.resnets.0.conv_shortcut",
    "output_blocks_1_1_proj_out": "up_blocks.0.attentions.1.proj_out",
    "output_blocks_1_2_conv": "up_blocks.0.upsamplers.0.conv",
    "output_blocks_2_1_transformer_blocks_0_attn2_to_q": "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_q",
    "output_blocks_3_0_out_layers_3": "up_blocks.1.resnets.1.conv2",
    "output_blocks_5_0_in_layers_2": "up_blocks.2.resnets.1.conv1",
    "out_2": "conv_out",
}


def sdxl_targets(folder: Path) -> dict[str, dict[str, nn.Module]]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    te = CLIPTextModel.from_pretrained(folder / "text_encoder")
    te2 = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2")
    text = lambda model: {p.removeprefix("text_model."): m for p, m in model.named_modules()  # noqa: E731
                          if isinstance(m, nn.Linear) and p.endswith(TEXT_LAYERS)}
    return {"unet": dict(unet.named_modules()), "text_encoder": text(te), "text_encoder_2": text(te2)}


def write_kohya_sdxl(path: Path, targets, seed: int, rank: int = 4, alpha: float = 8.0, gain: float = 0.4) -> Path:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    named = [(f"lora_unet_{k}", targets["unet"][v]) for k, v in SDXL_KOHYA_UNET.items()]
    for part, prefix in (("text_encoder", "lora_te1_text_model_"), ("text_encoder_2", "lora_te2_text_model_")):
        named += [(prefix + p.replace(".", "_"), layer) for p, layer in targets[part].items()]
    for name, layer in named:
        down, up = random_pair(layer, rank, g, gain)
        tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"] = down, up
        tensors[f"{name}.alpha"] = torch.tensor(alpha)
    save_file(tensors, path)
    return path


def write_peft_sdxl(path: Path, targets, seed: int, rank: int = 4, gain: float = 0.3) -> Path:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    unet_layers = {p: m for p, m in targets["unet"].items() if isinstance(m, (nn.Linear, nn.Conv2d))
                   and p.endswith(UNET_LAYERS) and p.startswith(("down_blocks", "mid_block", "up_blocks"))}
    for prefix, layers in (("unet.", unet_layers), ("text_encoder.text_model.", targets["text_encoder"]),
                           ("text_encoder_2.text_model.", targets["text_encoder_2"])):
        for module_path, layer in layers.items():
            down, up = random_pair(layer, rank, g, gain)
            tensors[f"{prefix}{module_path}.lora_A.weight"] = down
            tensors[f"{prefix}{module_path}.lora_B.weight"] = up
    save_file(tensors, path)
    return path


_SESSION: dict = {}


def session_tiny_sd(tmp_path_factory) -> Path:
    """The tiny SD pipeline of tests/graphs, saved once per session for every test folder that asks (import this
    module as `tests.models.adapters.lora_files` so all askers share one cache)."""
    from tests.graphs.tiny_pipelines import save_tiny_sd

    if "tiny_sd" not in _SESSION:
        _SESSION["tiny_sd"] = save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")
    return _SESSION["tiny_sd"]
