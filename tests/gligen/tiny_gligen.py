"""A tiny random GLIGEN text-box model for the tiny SD1 pipeline (tests/graphs/tiny_pipelines.py), in both layouts:
diffusers' (a UNet2DConditionModel with `attention_type="gated"`: fusers and `position_net` inside the UNet) and
ComfyUI's gligen/ file (`input_blocks.N.1.transformer_blocks.0.fuser.*`, `middle_block.1…`, `output_blocks.N.1…`,
`position_net.*`), written from the same tensors."""

from __future__ import annotations

from pathlib import Path

import torch


def gated_unet(sd_folder: Path, seed: int = 7):
    """diffusers' tiny SD1 UNet with random fusers (gates tanh(α) far from 0) and a random position net."""
    from diffusers import UNet2DConditionModel

    from tests.models.tiny_checkpoints import perturbed

    plain = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(plain.config, attention_type="gated")
    missing, unexpected = unet.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".fuser." in k or k.startswith("position_net.") for k in missing)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".fuser." in name or name.startswith("position_net."):
                p.add_(0.3 * torch.randn(p.shape, generator=generator))
                if name.endswith(("alpha_attn", "alpha_dense")):
                    p.fill_(0.8 if name.endswith("alpha_attn") else -0.6)
    return unet.eval()


def comfy_layout(unet) -> dict[str, torch.Tensor]:
    """The GLIGEN tensors of a gated diffusers UNet, named as ComfyUI's gligen/ files name them."""
    layers = unet.config.layers_per_block
    out = {}
    for name, tensor in unet.state_dict().items():
        if name.startswith("position_net."):
            out[name] = tensor.clone()
            continue
        if ".fuser." not in name:
            continue
        block, rest = name.split(".transformer_blocks.", 1)
        parts = block.split(".")  # down_blocks.i.attentions.j | mid_block.attentions.0 | up_blocks.i.attentions.j
        if parts[0] == "down_blocks":
            prefix = f"input_blocks.{1 + int(parts[1]) * (layers + 1) + int(parts[3])}.1"
        elif parts[0] == "mid_block":
            prefix = "middle_block.1"
        else:
            prefix = f"output_blocks.{int(parts[1]) * (layers + 1) + int(parts[3])}.1"
        out[f"{prefix}.transformer_blocks.{rest}"] = tensor.clone()
    return out


def write_gligen_file(unet, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in comfy_layout(unet).items()}, str(path))
    return path
