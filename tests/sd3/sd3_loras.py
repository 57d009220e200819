"""The SD3 LoRA files the tests load (tests/sd3/test_sd3_lora.py, tests/comfy/test_sd3_templates.py): one random
LoRA of the tiny SD3 folder (tests/sd3/tiny_sd3.py) written as kohya-ss (SAI module names, fused qkv, alphas), as
diffusers/peft (qkv split by B's rows, alpha/r baked into B), with ComfyUI's names, and as peft without bigG."""

from __future__ import annotations

from pathlib import Path

import torch

R, ALPHA = 4, 2.0  # kohya scale alpha / r = 0.5
SAI_LAYERS = {  # kohya name → (diffusers path(s) it covers, in, out) for the tiny transformer (D 32, 4 blocks)
    "joint_blocks_0_x_block_attn_qkv": (("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                         "transformer_blocks.0.attn.to_v"), 32, 96),
    "joint_blocks_1_context_block_attn_qkv": (("transformer_blocks.1.attn.add_q_proj",
                                               "transformer_blocks.1.attn.add_k_proj",
                                               "transformer_blocks.1.attn.add_v_proj"), 32, 96),
    "joint_blocks_0_x_block_attn2_qkv": (("transformer_blocks.0.attn2.to_q", "transformer_blocks.0.attn2.to_k",
                                          "transformer_blocks.0.attn2.to_v"), 32, 96),
    "joint_blocks_2_x_block_mlp_fc1": (("transformer_blocks.2.ff.net.0.proj",), 32, 128),
    "joint_blocks_1_context_block_attn_proj": (("transformer_blocks.1.attn.to_add_out",), 32, 32),
    "joint_blocks_3_context_block_adaLN_modulation_1": (("transformer_blocks.3.norm1_context.linear",), 32, 64),
    "final_layer_adaLN_modulation_1": (("norm_out.linear",), 32, 64),
    "context_embedder": (("context_embedder",), 64, 32),
}
DOTTED = {  # ComfyUI writes the same layers under `diffusion_model.` + SAI's dotted module path
    "joint_blocks_0_x_block_attn_qkv": "joint_blocks.0.x_block.attn.qkv",
    "joint_blocks_1_context_block_attn_qkv": "joint_blocks.1.context_block.attn.qkv",
    "joint_blocks_0_x_block_attn2_qkv": "joint_blocks.0.x_block.attn2.qkv",
    "joint_blocks_2_x_block_mlp_fc1": "joint_blocks.2.x_block.mlp.fc1",
    "joint_blocks_1_context_block_attn_proj": "joint_blocks.1.context_block.attn.proj",
    "joint_blocks_3_context_block_adaLN_modulation_1": "joint_blocks.3.context_block.adaLN_modulation.1",
    "final_layer_adaLN_modulation_1": "final_layer.adaLN_modulation.1", "context_embedder": "context_embedder",
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj":
        "text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj",
}
SWAPPED = ("joint_blocks_3_context_block_adaLN_modulation_1", "final_layer_adaLN_modulation_1")
TEXT_LAYERS = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj": ("text_encoder", 24, 24),
               "lora_te2_text_model_encoder_layers_1_self_attn_v_proj": ("text_encoder_2", 32, 32)}
# (diffusers reads text-encoder LoRAs on the attention projections only: its PEFT → diffusers key table)


def _peft_path(kohya: str) -> str:
    name = kohya.split("_", 2)[2]  # after lora_te1_ / lora_te2_
    return name.replace("text_model_encoder_layers_", "text_model.encoder.layers.").replace("_self_attn_",
                                                                                              ".self_attn.")


def write_lora_files(root: Path) -> dict[str, Path]:
    """Write the four files into `root`: {"kohya", "peft", "comfy", "peft without bigG"} → path."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(7)
    kohya, peft = {}, {}
    for name, (paths, n_in, n_out) in {**SAI_LAYERS, **{k: ((v[0],), v[1], v[2]) for k, v in TEXT_LAYERS.items()}
                                       }.items():
        down, up = 0.3 * torch.randn(R, n_in, generator=g), 0.3 * torch.randn(n_out, R, generator=g)
        prefix = "" if name.startswith("lora_te") else "lora_unet_"
        kohya.update({f"{prefix}{name}.lora_down.weight": down, f"{prefix}{name}.lora_up.weight": up,
                      f"{prefix}{name}.alpha": torch.tensor(ALPHA)})
        baked = up * (ALPHA / R)
        if name in SWAPPED:  # SAI's (shift, scale) rows → diffusers' (scale, shift)
            first, second = baked.chunk(2)
            baked = torch.cat([second, first])
        if name in TEXT_LAYERS:
            targets = (f"{TEXT_LAYERS[name][0]}.{_peft_path(name)}",)
        else:
            targets = tuple(f"transformer.{p}" for p in paths)
        for i, target in enumerate(targets):
            rows = baked.shape[0] // len(targets)
            peft[f"{target}.lora_A.weight"] = down.clone()
            peft[f"{target}.lora_B.weight"] = baked[i * rows:(i + 1) * rows].clone()
    comfy = {}  # ComfyUI's names; bigG's layer left out (this test covers the transformer and CLIP-L)
    for key, value in kohya.items():
        name, _, suffix = key.removeprefix("lora_unet_").partition(".")
        if name in DOTTED:
            comfy[("" if name.startswith("lora_te") else "diffusion_model.") + f"{DOTTED[name]}.{suffix}"] = value
    save_file(kohya, root / "kohya_sd3.safetensors")
    save_file(peft, root / "peft_sd3.safetensors")
    without_g = {k: v for k, v in peft.items() if not k.startswith("text_encoder_2.")}
    save_file(comfy, root / "comfy_sd3.safetensors")
    save_file(without_g, root / "peft_sd3_no_g.safetensors")
    return {"kohya": root / "kohya_sd3.safetensors", "peft": root / "peft_sd3.safetensors",
            "comfy": root / "comfy_sd3.safetensors", "peft without bigG": root / "peft_sd3_no_g.safetensors"}
