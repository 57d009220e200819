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


@pytest.fixture(scope="session")
def sd2_models(tmp_path_factory):
    """({"v": folder, "eps": folder}, ComfyUI models/ folder with checkpoints/tiny-sd2-{v,eps}.safetensors): a tiny
    SD 2.x-layout pipeline (linear projections, OpenCLIP-style text encoder, `!`-padded tokenizer) with 12 LDM
    output blocks, so the file holds the tensor ComfyUI reads to tell v from ε
    (`output_blocks.11.1.transformer_blocks.0.norm1.bias`: std 0.3 in the v file, 0.03 in the ε one)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.graphs.tiny_pipelines import CLIP_TOKENIZER
    from tests.models.single_file.ldm_layout import write_sd_file
    from tests.models.tiny_checkpoints import perturbed

    root = tmp_path_factory.mktemp("comfy-sd2")
    torch.manual_seed(0)
    unet = perturbed(UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=5, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=48, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True,
        norm_num_groups=16), 31, 0.05)
    vae = perturbed(AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16), 32, 0.05)
    text_encoder = perturbed(CLIPTextModel(CLIPTextConfig(
        hidden_size=48, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
        max_position_embeddings=77, hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=0)),
        33, 0.05)
    bias = unet.up_blocks[1].attentions[5].transformer_blocks[0].norm1.bias  # LDM output_blocks.11.1 …
    folders, models = {}, root / "models"
    (models / "checkpoints").mkdir(parents=True)
    for kind, std, prediction in (("v", 0.3, "v_prediction"), ("eps", 0.03, "epsilon")):
        with torch.no_grad():
            bias.copy_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(34)) * std)
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           steps_offset=1, prediction_type=prediction)
        folders[kind] = root / f"sd2-{kind}"
        StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!"),
            unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False).save_pretrained(folders[kind])
        write_sd_file(folders[kind], models / "checkpoints" / f"tiny-sd2-{kind}.safetensors", open_clip=True)
    return folders, models


@pytest.fixture(scope="session")
def sdxl_refiner(sdxl_models):
    """The diffusers folder of a tiny SDXL refiner (tests/graphs' refiner UNet, the base's bigG and VAE), also
    written as models/checkpoints/tiny-sdxl-refiner.safetensors beside the base."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from tiny_sdxl import _perturb, _scheduler, refiner_unet_config

    from tests.models.single_file.ldm_layout import write_sdxl_file

    base, models = sdxl_models
    parts = StableDiffusionXLPipeline.from_pretrained(base).components
    torch.manual_seed(0)
    folder = models.parent / "refiner"
    unet = _perturb(UNet2DConditionModel(**refiner_unet_config()), 25)
    with torch.no_grad():  # louder size/score ids, so that the test sees whether they are ComfyUI's
        unet.add_embedding.linear_1.weight *= 30
    StableDiffusionXLImg2ImgPipeline(
        vae=parts["vae"], text_encoder=None, text_encoder_2=parts["text_encoder_2"], tokenizer=None,
        tokenizer_2=parts["tokenizer_2"], unet=unet,
        scheduler=_scheduler(), requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        add_watermarker=False).save_pretrained(folder)
    write_sdxl_file(folder, models / "checkpoints" / "tiny-sdxl-refiner.safetensors", refiner=True)
    return folder


@pytest.fixture(scope="session")
def sdxl_control_models(tmp_path_factory):
    """(diffusers folder, ComfyUI models/ folder) for SDXL ControlNet workflows: tests/graphs' tiny SDXL base with
    a VAE that downsamples 8× (ComfyUI's hint is 8× the latent), as checkpoints/tiny-sdxl-vae8.safetensors, and
    an SDXL ControlNet whose image embedding also shrinks 8× (controlnet/tiny-sdxl-cn/, diffusers layout)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, StableDiffusionXLPipeline, UNet2DConditionModel

    sys.path.insert(0, str(Path(__file__).parents[1] / "graphs"))
    from tiny_sdxl import _perturb, _scheduler, _text_encoders, _tokenizers, base_unet_config

    from tests.models.single_file.ldm_layout import write_sdxl_file

    root = tmp_path_factory.mktemp("comfy-sdxl-control")
    torch.manual_seed(0)
    first, second = _text_encoders()
    tokenizer, tokenizer_2 = _tokenizers()
    vae = _perturb(AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8, sample_size=64,
        scaling_factor=0.13025), 26)
    unet = _perturb(UNet2DConditionModel(**base_unet_config()), 24)
    StableDiffusionXLPipeline(
        vae=vae, text_encoder=first, text_encoder_2=second, tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet,
        scheduler=_scheduler(), force_zeros_for_empty_prompt=True, add_watermarker=False).save_pretrained(root / "base")
    models = root / "models"
    (models / "checkpoints").mkdir(parents=True)
    write_sdxl_file(root / "base", models / "checkpoints" / "tiny-sdxl-vae8.safetensors")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 16))
    _perturb(controlnet, 27).save_pretrained(models / "controlnet" / "tiny-sdxl-cn")
    return root / "base", models
