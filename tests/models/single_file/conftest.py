"""Tiny single-file checkpoints, written in the original layout from tiny diffusers pipelines (built once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ldm_layout import write_sd_file  # noqa: E402


@pytest.fixture(scope="session")
def sd1_folder(tmp_path_factory) -> Path:
    from tests.graphs.tiny_pipelines import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("sf") / "tiny-sd1")


@pytest.fixture(scope="session")
def sd1_file(sd1_folder, tmp_path_factory) -> Path:
    return write_sd_file(sd1_folder, tmp_path_factory.mktemp("sf") / "tiny-sd1.safetensors")


@pytest.fixture(scope="session")
def sd1_images(sd1_folder, sd1_file):
    """(diffusers' image from the folder, diffusers' image from the single file with config=folder)."""
    import diffusers
    from test_single_file_sd1 import diffusers_image

    folder = diffusers.StableDiffusionPipeline.from_pretrained(sd1_folder, safety_checker=None)
    single = diffusers.StableDiffusionPipeline.from_single_file(
        str(sd1_file), config=str(sd1_folder), local_files_only=True, safety_checker=None)
    return diffusers_image(folder), diffusers_image(single)


def save_tiny_sd2(folder: Path) -> Path:
    """An SD2.x-v layout pipeline: linear projections, per-block heads, an OpenCLIP-like (exact GELU) text encoder,
    the `!`-padded tokenizer and a v-prediction DDIM scheduler (stabilityai/stable-diffusion-2-1's)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.graphs.tiny_pipelines import CLIP_TOKENIZER
    from tests.models.tiny_checkpoints import perturbed

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=48, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True,
        norm_num_groups=16)
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=48, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
        max_position_embeddings=77, hidden_act="gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction")
    pipe = StableDiffusionPipeline(
        vae=perturbed(vae, 11, 0.05), text_encoder=perturbed(text_encoder, 12, 0.05),
        tokenizer=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!"), unet=perturbed(unet, 13, 0.05),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sd2_folder(tmp_path_factory) -> Path:
    return save_tiny_sd2(tmp_path_factory.mktemp("sf") / "tiny-sd2")


@pytest.fixture(scope="session")
def sd2_file(sd2_folder, tmp_path_factory) -> Path:
    return write_sd_file(sd2_folder, tmp_path_factory.mktemp("sf") / "tiny-sd2.safetensors", open_clip=True)


@pytest.fixture(scope="session")
def inpaint_folder(sd1_folder, tmp_path_factory) -> Path:
    """The tiny SD1 pipeline with a 9-channel (latents, mask, masked-image latents) UNet."""
    import shutil

    import torch
    from diffusers import UNet2DConditionModel

    from tests.models.tiny_checkpoints import perturbed

    folder = tmp_path_factory.mktemp("sf") / "tiny-inpaint"
    shutil.copytree(sd1_folder, folder)
    config = dict(UNet2DConditionModel.load_config(sd1_folder / "unet"), in_channels=9)
    torch.manual_seed(0)
    perturbed(UNet2DConditionModel.from_config(config), 21, 0.05).save_pretrained(folder / "unet")
    return folder


@pytest.fixture(scope="session")
def inpaint_file(inpaint_folder, tmp_path_factory) -> Path:
    return write_sd_file(inpaint_folder, tmp_path_factory.mktemp("sf") / "tiny-inpaint.safetensors")


@pytest.fixture(scope="session")
def sdxl_files(tmp_path_factory):
    """{"base": (folder, file), "refiner": (folder, file)}: tests/graphs' tiny SDXL pair, written in the SGM layout."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "graphs"))
    from ldm_layout import write_sdxl_file
    from tiny_sdxl import save_tiny_sdxl

    root = tmp_path_factory.mktemp("sfxl")
    base, refiner = save_tiny_sdxl(root / "tiny-sdxl-base", root / "tiny-sdxl-refiner")
    return {"base": (base, write_sdxl_file(base, root / "sdxl-base.safetensors")),
            "refiner": (refiner, write_sdxl_file(refiner, root / "sdxl-refiner.safetensors", refiner=True))}
