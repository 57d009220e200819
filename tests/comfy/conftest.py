"""A ComfyUI models/ folder holding the tiny SD1.x single file, and ComfyUI's default txt2img workflow for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def sd1_folder(tmp_path_factory) -> Path:
    from tests.graphs.tiny_pipelines import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("comfy") / "tiny-sd1")


@pytest.fixture(scope="session")
def models_dir(sd1_folder, tmp_path_factory) -> Path:
    """ComfyUI's layout: models/checkpoints/tiny-sd1.safetensors (the tiny pipeline in the original SD layout)."""
    from tests.models.single_file.ldm_layout import write_sd_file

    root = tmp_path_factory.mktemp("comfy") / "models"
    (root / "checkpoints").mkdir(parents=True)
    write_sd_file(sd1_folder, root / "checkpoints" / "tiny-sd1.safetensors")
    return root


@pytest.fixture(scope="session")
def default_run(models_dir, sd1_folder, tmp_path_factory):
    """(pixels, PNG path) of ComfyUI's default workflow run once through `nodegraph run workflow.json`."""
    from workflows import DEFAULT_API, run_cli

    return run_cli(tmp_path_factory.mktemp("default"), DEFAULT_API, models_dir, sd1_folder)


@pytest.fixture(scope="session")
def sdxl_models(tmp_path_factory):
    """(diffusers folder, ComfyUI models/ folder holding checkpoints/tiny-sdxl.safetensors): tests/graphs' tiny
    SDXL base alone, written in the SGM single-file layout."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "graphs"))
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from tiny_sdxl import _perturb, _scheduler, _text_encoders, _tokenizers, _vae, base_unet_config

    from tests.models.single_file.ldm_layout import write_sdxl_file

    root = tmp_path_factory.mktemp("comfy-sdxl")
    torch.manual_seed(0)
    first, second = _text_encoders()
    tokenizer, tokenizer_2 = _tokenizers()
    StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=first, text_encoder_2=second, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        unet=_perturb(UNet2DConditionModel(**base_unet_config()), 24), scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True, add_watermarker=False).save_pretrained(root / "base")
    (root / "models" / "checkpoints").mkdir(parents=True)
    write_sdxl_file(root / "base", root / "models" / "checkpoints" / "tiny-sdxl.safetensors")
    return root / "base", root / "models"


@pytest.fixture(scope="session")
def control_models(sd1_folder, tmp_path_factory):
    """(diffusers folder, ComfyUI models/ folder) for ControlNet workflows: the tiny SD1 pipeline with a VAE that
    downsamples 8× (ComfyUI sizes a ControlNet's hint as 8× the latent, whatever the VAE), as
    checkpoints/tiny-sd1-vae8.safetensors, and two tiny ControlNets whose image embedding also shrinks 8×, kept
    as diffusers saves them (controlnet/tiny-cn-a/diffusion_pytorch_model.safetensors + config.json)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, StableDiffusionPipeline

    from tests.models.single_file.ldm_layout import write_sd_file
    from tests.models.tiny_checkpoints import perturbed

    root = tmp_path_factory.mktemp("comfy-control")
    pipe = StableDiffusionPipeline.from_pretrained(sd1_folder, safety_checker=None)
    torch.manual_seed(0)
    pipe.vae = perturbed(AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8, sample_size=64), 21, scale=0.05)
    pipe.save_pretrained(root / "sd1-vae8")
    models = root / "models"
    (models / "checkpoints").mkdir(parents=True)
    write_sd_file(root / "sd1-vae8", models / "checkpoints" / "tiny-sd1-vae8.safetensors")
    for name, seed in (("tiny-cn-a", 11), ("tiny-cn-b", 12)):
        controlnet = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(4, 8, 8, 16))
        perturbed(controlnet, seed, scale=0.1).save_pretrained(models / "controlnet" / name)
    return root / "sd1-vae8", models
