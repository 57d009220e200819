"""CLIPSetLastLayer, LoraLoader, KSamplerAdvanced, LatentUpscale and ComfyUI's prompt weighting, each against an
independent oracle: diffusers' pipeline (clip_skip, load_lora_weights), the default workflow's diffusers-checked
image, torch's interpolation, or the weighting rule of the facts note applied here to transformers' CLIP."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from workflows import DEFAULT_API, api, diffusers_comfy_image, run_cli


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def test_clip_set_last_layer_minus_2_is_diffusers_clip_skip_1(tmp_path, models_dir, sd1_folder, default_run):
    from diffusers import EulerDiscreteScheduler

    doc = copy.deepcopy(DEFAULT_API)
    doc["10"] = {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["4", 1]}}
    doc["6"]["inputs"]["clip"] = doc["7"]["inputs"]["clip"] = ["10", 0]
    ours = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]
    theirs = diffusers_comfy_image(sd1_folder, EulerDiscreteScheduler, clip_skip=1, timestep_spacing="linspace")
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, default_run[0]) > 8  # the layer really changed


def test_lora_loader_matches_diffusers_load_lora_weights(tmp_path, models_dir, sd1_folder, default_run):
    from diffusers import EulerDiscreteScheduler

    from tests.models.adapters.lora_files import lora_targets, write_kohya

    (models_dir / "loras").mkdir(exist_ok=True)
    lora = write_kohya(models_dir / "loras" / "tiny-kohya.safetensors", lora_targets(sd1_folder), seed=7)
    doc = copy.deepcopy(DEFAULT_API)
    doc["10"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "tiny-kohya.safetensors", "strength_model": 0.8,
                                                        "strength_clip": 0.8, "model": ["4", 0], "clip": ["4", 1]}}
    doc["3"]["inputs"]["model"] = ["10", 0]
    doc["6"]["inputs"]["clip"] = doc["7"]["inputs"]["clip"] = ["10", 1]
    ours = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]
    theirs = diffusers_comfy_image(sd1_folder, EulerDiscreteScheduler, loras={"k": (lora, 0.8)},
                                   timestep_spacing="linspace")
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, default_run[0]) > 8  # the LoRA really changed the image


def test_ksampler_advanced_in_two_halves_equals_one_ksampler(tmp_path, models_dir, sd1_folder, default_run):
    doc = copy.deepcopy(DEFAULT_API)
    common = {"noise_seed": 5, "steps": 4, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
              "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0]}
    doc["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "enable", "start_at_step": 0, "end_at_step": 2, "return_with_leftover_noise": "enable",
        "latent_image": ["5", 0]}}
    doc["10"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "disable", "start_at_step": 2, "end_at_step": 10000,
        "return_with_leftover_noise": "disable", "latent_image": ["3", 0]}}
    doc["8"]["inputs"]["samples"] = ["10", 0]
    ours = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]
    assert max_diff(ours, default_run[0]) <= 1


def test_latent_upscale_is_torch_interpolation_at_one_eighth(models_dir):
    from nodegraph.nodes.comfy_latent import ComfyLatentUpscale

    latents = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    node = ComfyLatentUpscale()
    for method in ("nearest-exact", "bilinear", "area", "bicubic"):
        out = node.run(ComfyLatentUpscale.Inputs(latents=latents, upscale_method=method, width=128, height=96),
                       None)["latents"]
        torch.testing.assert_close(out, torch.nn.functional.interpolate(latents, size=(12, 16), mode=method))
    cropped = node.run(ComfyLatentUpscale.Inputs(latents=latents, upscale_method="bilinear", width=64, height=64,
                                                 crop="center"), None)["latents"]
    torch.testing.assert_close(cropped, torch.nn.functional.interpolate(latents[..., 2:10], size=(8, 8),
                                                                        mode="bilinear"))


@pytest.fixture(scope="module")
def clip(sd1_folder):
    from transformers import CLIPTextModel, CLIPTokenizer

    return CLIPTextModel.from_pretrained(sd1_folder / "text_encoder").eval(), \
        CLIPTokenizer.from_pretrained(sd1_folder / "tokenizer")


def test_weights_parse_by_comfyui_rules():
    from nodegraph.comfy.text import parse_weights

    pieces = parse_weights("a (b) ((c)) (d:1.5) (e (f:0.5) g) [h]")
    weights = {text.strip(): round(w, 4) for text, w in pieces if text.strip()}
    assert weights == {"a": 1.0, "b": 1.1, "c": 1.21, "d": 1.5, "e": 1.1, "f": 0.5, "g": 1.1, "[h]": 1.0}


def test_weighting_moves_tokens_relative_to_the_empty_prompt(clip):
    from nodegraph.comfy.text import encode

    encoder, tokenizer = clip
    ours = encode(encoder, tokenizer, "a (cat:1.3) on ((grass))")[0]
    # the facts note's rule, applied here to transformers' CLIP: z_empty + w·(z − z_empty) at weighted positions
    words = [("a", 1.0), ("cat", 1.3), ("on", 1.0), ("grass", 1.21)]
    ids = [tokenizer.bos_token_id] + [tokenizer(w).input_ids[1] for w, _ in words]
    weights = [1.0] + [w for _, w in words]
    ids += [tokenizer.eos_token_id] * (77 - len(ids))
    weights += [1.0] * (77 - len(weights))
    with torch.no_grad():
        z = encoder(torch.tensor([ids]))[0]
        empty = encoder(torch.tensor([[tokenizer.bos_token_id] + [tokenizer.eos_token_id] * 76]))[0]
    w = torch.tensor(weights)[None, :, None]
    expected = empty + w * (z - empty)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert (ours - z).abs().max() > 1e-2  # weighting changed something
    a1111 = z * w * (z.mean() / (z * w).mean())  # A1111's rule gives another result
    assert (ours - a1111).abs().max() > 1e-3


def test_long_prompts_are_encoded_in_77_token_chunks(clip):
    from nodegraph.comfy.text import encode

    encoder, tokenizer = clip
    prompt = " ".join(["cat"] * 80)
    ours = encode(encoder, tokenizer, prompt)[0]
    assert ours.shape[:2] == (1, 154)
    with torch.no_grad():
        first = encoder(torch.tensor([[tokenizer.bos_token_id] + [tokenizer("cat").input_ids[1]] * 75
                                      + [tokenizer.eos_token_id]]))[0]
    torch.testing.assert_close(ours[:, :77], first, rtol=1e-5, atol=1e-5)


def test_hires_fix_workflow_runs_at_the_upscaled_size(tmp_path, models_dir, sd1_folder):
    doc = api(n3_steps=1)  # one step each: only the translation and the sizes are checked here
    doc["10"] = {"class_type": "LatentUpscale", "inputs": {"upscale_method": "nearest-exact", "width": 128,
                                                           "height": 128, "crop": "disabled", "samples": ["3", 0]}}
    doc["11"] = {"class_type": "KSampler", "inputs": {**doc["3"]["inputs"], "denoise": 0.5, "latent_image": ["10", 0]}}
    doc["8"]["inputs"]["samples"] = ["11", 0]
    pixels = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]
    assert pixels.shape == (32, 32, 3)


def test_img2img_with_load_image_and_vae_encode_matches_diffusers_img2img(tmp_path, models_dir, sd1_folder):
    import diffusers
    from PIL import Image

    from workflows import CFG, NEGATIVE, PROMPT, SEED

    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    (tmp_path / "input").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "input" / "photo.png")
    # 5 steps at denoise 0.5: the last 5 of a 10-step schedule, t = 999, 888, … (whole numbers, so diffusers'
    # linear σ interpolation and fractional t coincide with ComfyUI's log-σ one and integer t)
    doc = api(n3_denoise=0.5, n3_steps=5)
    doc["10"] = {"class_type": "LoadImage", "inputs": {"image": "photo.png", "upload": "image"}}
    doc["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    doc["3"]["inputs"]["latent_image"] = ["11", 0]
    ours = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]

    pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(sd1_folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():  # ComfyUI encodes to the posterior's mode (no sampling), scaled for the model
        latents = pipe.vae.encode(x).latent_dist.mode() * pipe.vae.config.scaling_factor
    # denoise 0.5 of 5 steps = the last 5 of 10 (ComfyUI) = strength 0.5 of 10 (diffusers); noise added at σ, not
    # √(1 + σ²), since σ is not the model's σmax
    theirs = pipe(PROMPT, negative_prompt=NEGATIVE, image=latents, strength=0.5, num_inference_steps=10,
                  guidance_scale=CFG, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").images[0]
    theirs = (theirs * 255).round().astype(np.uint8)
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, pixels) > 8  # the sampler changed the image


def test_sampler_custom_with_ksampler_select_and_basic_scheduler_equals_ksampler(tmp_path, models_dir, sd1_folder,
                                                                                  default_run):
    doc = copy.deepcopy(DEFAULT_API)
    doc["12"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    doc["13"] = {"class_type": "BasicScheduler", "inputs": {"scheduler": "normal", "steps": 4, "denoise": 1.0,
                                                            "model": ["4", 0]}}
    doc["3"] = {"class_type": "SamplerCustom", "inputs": {
        "add_noise": True, "noise_seed": 5, "cfg": 7.5, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "sampler": ["12", 0], "sigmas": ["13", 0], "latent_image": ["5", 0]}}
    ours = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]
    assert max_diff(ours, default_run[0]) == 0  # same noise, σ and sampler as KSampler (diffusers-checked image)


def test_vae_loader_and_lora_loader_model_only_are_wired_in(tmp_path, models_dir, sd1_folder, default_run):
    import shutil

    from tests.models.adapters.lora_files import lora_targets, write_kohya

    (models_dir / "vae").mkdir(exist_ok=True)
    shutil.copy(sd1_folder / "vae" / "diffusion_pytorch_model.safetensors", models_dir / "vae" / "same-vae.safetensors")
    doc = copy.deepcopy(DEFAULT_API)
    doc["10"] = {"class_type": "VAELoader", "inputs": {"vae_name": "same-vae.safetensors"}}
    doc["8"]["inputs"]["vae"] = ["10", 0]
    assert max_diff(run_cli(tmp_path / "vae", doc, models_dir, sd1_folder)[0], default_run[0]) == 0  # same weights

    (models_dir / "loras").mkdir(exist_ok=True)
    unet_only = {"unet": lora_targets(sd1_folder)["unet"], "text_encoder": {}}
    write_kohya(models_dir / "loras" / "unet-only.safetensors", unet_only, seed=8)
    doc = copy.deepcopy(DEFAULT_API)
    doc["11"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "unet-only.safetensors",
                                                                 "strength_model": 1.0, "model": ["4", 0]}}
    doc["3"]["inputs"]["model"] = ["11", 0]
    assert max_diff(run_cli(tmp_path / "lora", doc, models_dir, sd1_folder)[0], default_run[0]) > 8
