"""graphs/hires_fix.yaml against the same two diffusers calls made by hand: StableDiffusionPipeline at the base
size, the documented resize, StableDiffusionImg2ImgPipeline on the result, one generator through both."""

from __future__ import annotations

import functools

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from test_stable_diffusion_parity import assert_close_images
from tiny_pipelines import REPO, png_pixels, to_uint8

SETTINGS = dict(prompt="a cat", negative_prompt="blurry", seed=9, steps=4, guidance_scale=7.5, height=16, width=24)
HIRES = dict(upscale=1.5, hires_steps=6, hires_strength=0.5)  # 16×24 → 24×36 → 24×32 (multiples of 8)


@functools.cache
def pipelines(model, dtype=torch.float32):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    txt2img = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, torch_dtype=dtype)
    txt2img.set_progress_bar_config(disable=True)
    img2img = StableDiffusionImg2ImgPipeline(**txt2img.components)
    img2img.set_progress_bar_config(disable=True)
    return txt2img, img2img


def by_hand(model, upscaler, batch=1, dtype=torch.float32):
    txt2img, img2img = pipelines(model, dtype)
    generator = torch.Generator("cpu").manual_seed(SETTINGS["seed"])
    common = dict(prompt=SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"],
                  guidance_scale=SETTINGS["guidance_scale"], generator=generator, num_images_per_prompt=batch)
    base = txt2img(height=SETTINGS["height"], width=SETTINGS["width"], num_inference_steps=SETTINGS["steps"],
                   output_type="latent" if upscaler == "latent" else "pil", **common).images
    if upscaler == "latent":  # bilinear on the latents (factor-2 tiny VAE: 24×32 pixels = 12×16 latents)
        enlarged = F.interpolate(base, size=(12, 16), mode="bilinear")
    else:
        enlarged = [image.resize((32, 24), resample=PIL.Image.LANCZOS) for image in base]
    out = img2img(image=enlarged, num_inference_steps=HIRES["hires_steps"], strength=HIRES["hires_strength"],
                  output_type="np", **common).images
    return to_uint8(out), enlarged


@pytest.mark.parametrize("upscaler", ["latent", "image"])
def test_hires_fix_graph_matches_two_diffusers_calls(tiny_sd, upscaler):
    from nodegraph import run_graph

    ours = png_pixels(run_graph(REPO / "graphs" / "hires_fix.yaml", inputs=dict(
        model=str(tiny_sd), upscaler=upscaler, **SETTINGS, **HIRES), device="cpu")["image"])
    theirs, enlarged = by_hand(tiny_sd, upscaler)
    assert ours.shape == (1, 24, 32, 3)
    assert_close_images(ours, theirs)
    if upscaler == "image":  # the img2img pass changed the enlarged picture: the comparison is not vacuous
        assert np.abs(np.asarray(enlarged[0]).astype(int) - theirs[0].numpy().astype(int)).max() > 20


def test_hires_fix_batch_of_two_matches_two_diffusers_calls(tiny_sd):
    """Both passes take the batch (num_images_per_prompt=2): one noise tensor of 2 for the base pass; with the
    image upscaler the img2img pass decodes, resizes and encodes both pictures, then re-noises them."""
    from nodegraph import run_graph

    ours = png_pixels(run_graph(REPO / "graphs" / "hires_fix.yaml", inputs=dict(
        model=str(tiny_sd), upscaler="image", batch_size=2, **SETTINGS, **HIRES), device="cpu")["image"])
    theirs, _ = by_hand(tiny_sd, "image", batch=2)
    assert ours.shape == (2, 24, 32, 3)
    assert_close_images(ours, theirs)
    assert (theirs[0].int() - theirs[1].int()).abs().max() > 20  # two different pictures, not one repeated
