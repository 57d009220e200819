"""graphs/stable_diffusion.yaml with an SD2-style v-prediction checkpoint whose scheduler is zero-terminal-SNR with
"trailing" spacing (Lin et al. 2023), and `guidance_rescale`, makes diffusers' StableDiffusionPipeline's images."""

from __future__ import annotations

import json

import pytest
import torch
from test_stable_diffusion_parity import SCHEDULERS, assert_close_images
from tiny_pipelines import CLIP_TOKENIZER, REPO, _perturb, png_pixels, to_uint8

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
ZERO_SNR_V = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
              "prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": True}


@pytest.fixture(scope="module")
def tiny_sd2_vpred(tmp_path_factory):
    """SD2 layout (linear projections, per-block heads, GELU text encoder) with a zero-SNR v-prediction scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, down_block_types=("CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=24,
        attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True, norm_num_groups=16)
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=24, intermediate_size=40, num_attention_heads=3, num_hidden_layers=2, vocab_size=49408,
        hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    folder = tmp_path_factory.mktemp("models") / "tiny-sd2-v"
    StableDiffusionPipeline(
        vae=_perturb(vae, 31), text_encoder=_perturb(text_encoder, 32), unet=_perturb(unet, 33),
        tokenizer=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER), scheduler=DDIMScheduler.from_config(ZERO_SNR_V),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False).save_pretrained(folder)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(ZERO_SNR_V))
    return folder


def diffusers_images(folder, scheduler, **settings):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    seed = settings.pop("seed")
    out = pipe(**settings, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    return to_uint8(out.images)


def nodegraph_images(folder, scheduler, **settings):
    from nodegraph import run_graph

    inputs = dict(model=str(folder), prompt=settings["prompt"], seed=settings["seed"],
                  steps=settings["num_inference_steps"], guidance_scale=settings["guidance_scale"],
                  guidance_rescale=settings["guidance_rescale"], height=settings["height"], width=settings["width"])
    if scheduler is not None:
        inputs["scheduler"] = scheduler
    return png_pixels(run_graph(SD_GRAPH, inputs=inputs, device="cpu")["image"])


@pytest.mark.parametrize("scheduler", [None, "euler"])
def test_v_prediction_zero_snr_trailing_with_guidance_rescale_matches_diffusers(tiny_sd2_vpred, scheduler):
    settings = dict(prompt="a lighthouse at night", seed=2, num_inference_steps=4, guidance_scale=7.5,
                    guidance_rescale=0.7, height=16, width=24)
    ours = nodegraph_images(tiny_sd2_vpred, scheduler, **settings)
    assert_close_images(ours, diffusers_images(tiny_sd2_vpred, scheduler, **dict(settings)))
    plain = nodegraph_images(tiny_sd2_vpred, scheduler, **{**settings, "guidance_rescale": 0.0})
    assert not torch.equal(ours, plain), "guidance_rescale 0.7 must change the image"
