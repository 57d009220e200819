"""Tiny random SDXL base and refiner pipelines saved by diffusers itself: the oracle side of the SDXL graph tests.

Unlike diffusers' own test dummies: three UNet blocks with per-block transformer depths and head counts, a
second text encoder of another width using the legacy eos pooling (eos_token_id 2, as the real bigG config),
tokenizer_2 padding with "!" (as SDXL 1.0's), a 3-level VAE with SDXL's scaling factor, SDXL 1.0's Euler
scheduler config, and every weight perturbed off its initial value.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tiny_pipelines import CLIP_TOKENIZER, _perturb

SDXL_CONFIGS = Path(__file__).resolve().parents[1] / "models" / "data" / "reference" / "sdxl-configs.json"
TEXT_WIDTHS = (32, 40)  # text_encoder, text_encoder_2 → cross_attention_dim 72
POOLED = 24
TIME_ID_WIDTH = 8


def _text_encoders():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    first = CLIPTextModel(CLIPTextConfig(
        hidden_size=TEXT_WIDTHS[0], intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
        vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=1))
    second = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=TEXT_WIDTHS[1], intermediate_size=64, num_attention_heads=5, num_hidden_layers=3,
        vocab_size=49408, max_position_embeddings=77, projection_dim=POOLED, hidden_act="gelu",
        bos_token_id=0, eos_token_id=2, pad_token_id=1))
    return _perturb(first, 21), _perturb(second, 22)


def _tokenizers():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(CLIP_TOKENIZER), CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!")


def _vae():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(16, 32, 32), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=0.13025,
                        force_upcast=True)
    return _perturb(vae, 23)


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(json.loads(SDXL_CONFIGS.read_text())["SDXL_SCHEDULER"])


def base_unet_config() -> dict:
    return dict(block_out_channels=(16, 32, 48), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                layers_per_block=1, attention_head_dim=(1, 2, 4), transformer_layers_per_block=(1, 1, 2),
                use_linear_projection=True, norm_num_groups=8, cross_attention_dim=sum(TEXT_WIDTHS),
                addition_embed_type="text_time", addition_time_embed_dim=TIME_ID_WIDTH,
                projection_class_embeddings_input_dim=POOLED + 6 * TIME_ID_WIDTH, sample_size=8)


def refiner_unet_config() -> dict:
    return dict(block_out_channels=(24, 48), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1, attention_head_dim=(2, 4),
                transformer_layers_per_block=2, use_linear_projection=True, norm_num_groups=8,
                cross_attention_dim=TEXT_WIDTHS[1], addition_embed_type="text_time",
                addition_time_embed_dim=TIME_ID_WIDTH, projection_class_embeddings_input_dim=POOLED + 5 * TIME_ID_WIDTH,
                sample_size=8)


def save_tiny_sdxl(base_folder: Path, refiner_folder: Path) -> tuple[Path, Path]:
    """An SDXL base pipeline and a refiner that shares its second text encoder and VAE (as SDXL 1.0's do)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    first, second = _text_encoders()
    tokenizer, tokenizer_2 = _tokenizers()
    vae = _vae()
    StableDiffusionXLPipeline(
        vae=vae, text_encoder=first, text_encoder_2=second, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        unet=_perturb(UNet2DConditionModel(**base_unet_config()), 24), scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True, add_watermarker=False).save_pretrained(base_folder)
    StableDiffusionXLImg2ImgPipeline(
        vae=vae, text_encoder=None, text_encoder_2=second, tokenizer=None, tokenizer_2=tokenizer_2,
        unet=_perturb(UNet2DConditionModel(**refiner_unet_config()), 25), scheduler=_scheduler(),
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        add_watermarker=False).save_pretrained(refiner_folder)
    return base_folder, refiner_folder
