"""Tiny model files and folders for the model-list tests (tests/serve/test_model_list.py, tests/web/test_page_models.py):
a `--models` folder laid out as ComfyUI's `models/`, files holding only the keys that tell a family apart, and a
Hugging Face cache with one snapshot. In a module of its own so both folders' tests import it.
"""

import json

import torch
from safetensors.torch import save_file

SDXL_FILE = "checkpoints/sdxl/tiny_xl.safetensors"


def write(path, keys: dict[str, tuple[int, ...]]):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path))


def unet_in(channels: int) -> dict:
    return {"model.diffusion_model.input_blocks.0.0.weight": (2, channels, 1, 1)}


def make_models(root):
    """A ComfyUI-style models folder; returns {label: family} as the files were built to be."""
    write(root / "checkpoints/sd15_tiny.safetensors",
          {**unet_in(4), "cond_stage_model.transformer.text_model.final_layer_norm.weight": (2,)})
    write(root / SDXL_FILE, {**unet_in(4), "conditioner.embedders.1.model.ln_final.weight": (2,)})
    write(root / "checkpoints/sd15_inpaint.safetensors",
          {**unet_in(9), "cond_stage_model.transformer.text_model.final_layer_norm.weight": (2,)})
    write(root / "vae/sd_vae.safetensors", {"decoder.conv_in.weight": (2, 4, 1, 1)})
    write(root / "vae/ae.safetensors", {"decoder.conv_in.weight": (2, 16, 1, 1)})
    write(root / "loras/detail.safetensors", {"lora_unet_down_blocks_0.lora_down.weight": (1, 2)})
    write(root / "diffusion_models/z_image_turbo.safetensors",
          {"layers.0.adaLN_modulation.0.weight": (2, 2), "cap_embedder.0.weight": (2,)})
    write(root / "controlnet/canny.safetensors", {"control_model.input_hint_block.0.weight": (2, 3, 1, 1)})
    write(root / "embeddings/style.safetensors", {"emb_params": (1, 2)})
    write(root / "text_encoders/qwen_3_4b.safetensors",
          {"model.layers.0.self_attn.q_norm.weight": (2,), "model.embed_tokens.weight": (2, 2)})
    (root / "vae/flux-vae").mkdir(parents=True)
    (root / "vae/flux-vae/config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 16}))
    pipeline = root / "diffusers/my-sdxl"
    (pipeline / "unet").mkdir(parents=True)
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline",
                                                           "text_encoder": ["transformers", "CLIPTextModel"]}))
    (pipeline / "unet/config.json").write_text(json.dumps({"addition_embed_type": "text_time", "in_channels": 4}))
    (root / "checkpoints/notes.txt").write_text("not a model")
    return {"checkpoints/sd15_tiny.safetensors": "sd1", SDXL_FILE: "sdxl_base",
            "checkpoints/sd15_inpaint.safetensors": "sd1_inpaint", "vae/sd_vae.safetensors": "vae",
            "vae/ae.safetensors": "vae16", "loras/detail.safetensors": "lora",
            "diffusion_models/z_image_turbo.safetensors": "z_image_transformer", "diffusers/my-sdxl": "sdxl_base",
            "controlnet/canny.safetensors": "controlnet", "embeddings/style.safetensors": "embedding",
            "text_encoders/qwen_3_4b.safetensors": "qwen3_text_encoder", "vae/flux-vae": "vae16"}


def make_hub_cache(cache):
    snapshot = cache / "models--someone--tiny-z-image" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps({"_class_name": "ZImagePipeline"}))
    (cache / "models--someone--tiny-z-image" / "refs").mkdir()
    (cache / "datasets--someone--data" / "snapshots" / ("b" * 40)).mkdir(parents=True)  # a data set: not a model
