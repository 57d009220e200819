"""Tiny random pipelines saved by diffusers itself: the oracle side of the shipped-graph parity tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.models.tiny_checkpoints import perturbed

REPO = Path(__file__).resolve().parents[2]
CLIP_TOKENIZER = REPO / "nodegraph" / "builtin" / "clip_tokenizer"
# CompVis/stable-diffusion-v1-4's scheduler_config.json as published (no `timestep_spacing` key, so a scheduler
# swapped in from it takes its own default spacing: the quirk the SD graphs must reproduce).
SD14_SCHEDULER_JSON = {
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.7.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False,
}


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    return perturbed(model, seed, scale=0.05)


def save_tiny_sd(folder: Path) -> Path:
    """A Stable Diffusion 1.x-layout pipeline with random weights and the real CLIP tokenizer."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=16)
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    pipe = StableDiffusionPipeline(
        vae=_perturb(vae, 1), text_encoder=_perturb(text_encoder, 2), tokenizer=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER),
        unet=_perturb(unet, 3), scheduler=PNDMScheduler(), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD14_SCHEDULER_JSON, indent=2))
    return folder


def save_tiny_ddpm(folder: Path) -> Path:
    """A DDPMPipeline folder in the ddpm-cat-256 layout, scaled down (attention, downsample_padding=0)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        block_out_channels=(16, 16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None, downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=8, layers_per_block=1, sample_size=16)
    scheduler = DDPMScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear", clip_sample=True,
                              num_train_timesteps=1000, variance_type="fixed_small")
    DDPMPipeline(unet=_perturb(unet, 4), scheduler=scheduler).save_pretrained(folder)
    return folder


def to_uint8(images) -> "torch.Tensor":
    """diffusers' float [0, 1] images (B, H, W, 3) numpy → uint8 tensor, exactly as its PIL conversion does."""
    import numpy as np

    return torch.from_numpy((np.asarray(images) * 255).round().astype("uint8"))


def png_pixels(image) -> torch.Tensor:
    """nodegraph's Image output → the uint8 pixels (B, H, W, 3) its PNG writer stores."""
    import numpy as np

    from nodegraph.exec.writers import to_pil_images

    return torch.from_numpy(np.stack([np.asarray(p) for p in to_pil_images(image, "image")]))
