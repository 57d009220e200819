"""graphs/sdxl_inpaint.yaml against StableDiffusionXLInpaintPipeline: the SDXL base (4 channels) and a 9-channel
SDXL inpainting UNet."""

from __future__ import annotations

import functools

import PIL.Image
import pytest
import torch
from test_stable_diffusion_parity import assert_close_images
from tiny_inpaint import save_picture_and_mask
from tiny_pipelines import REPO, png_pixels, to_uint8

# the tiny SDXL VAE shrinks 4×: 48×32 pixels are 12×8 latents
SETTINGS = dict(prompt="a cat", negative_prompt="blurry", seed=5, steps=5, guidance_scale=7.5, batch_size=2)


@pytest.fixture(scope="module")
def sdxl_models(tiny_sdxl, tiny_sdxl_inpaint) -> dict:
    return {"4-channel": tiny_sdxl[0], "9-channel": tiny_sdxl_inpaint}


@pytest.fixture(scope="module")
def picture_and_mask(tmp_path_factory):
    return save_picture_and_mask(tmp_path_factory.mktemp("sdxl-pictures"), width=48, height=32)


@functools.cache
def inpaint_pipeline(model, dtype=torch.float32):
    from diffusers import StableDiffusionXLInpaintPipeline

    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(model, add_watermarker=False, torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_inpaint(model, picture, mask, strength, dtype=torch.float32):
    out = inpaint_pipeline(model, dtype)(
        SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"], image=PIL.Image.open(picture),
        mask_image=PIL.Image.open(mask), strength=strength, height=32, width=48,
        num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"],
        num_images_per_prompt=SETTINGS["batch_size"], generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]),
        output_type="np")
    return to_uint8(out.images)


# 9-channel at SDXL's default strength 0.9999 (noised image latents, one step dropped); the base at 0.75
@pytest.mark.parametrize("kind,strength", [("9-channel", 0.9999), ("4-channel", 0.75)])
def test_sdxl_inpaint_graph_matches_diffusers(sdxl_models, picture_and_mask, kind, strength):
    from nodegraph import run_graph

    picture, mask = picture_and_mask
    ours = png_pixels(run_graph(REPO / "graphs" / "sdxl_inpaint.yaml", inputs=dict(
        model=str(sdxl_models[kind]), image=str(picture), mask=str(mask), strength=strength, **SETTINGS),
        device="cpu")["image"])
    theirs = diffusers_inpaint(sdxl_models[kind], picture, mask, strength)
    assert ours.shape == (2, 32, 48, 3)  # the image's size
    assert_close_images(ours, theirs)
    # sensitive to the mask: with everything kept (an all-black mask) diffusers gives another image
    black = mask.parent / "black.png"
    PIL.Image.new("L", (48, 32)).save(black)
    assert (diffusers_inpaint(sdxl_models[kind], picture, black, strength).int() - theirs.int()).abs().max() > 20


def test_sdxl_inpaint_graph_matches_diffusers_in_bfloat16(sdxl_models, picture_and_mask):
    """In bf16 the pipeline encodes the image with its VAE upcast to float32 (the SDXL VAE's `force_upcast`) from
    pixels rounded to bf16 after scaling to [-1, 1]; encoding with the bf16 VAE instead differs by 42/255 here."""
    from nodegraph import run_graph

    picture, mask = picture_and_mask
    ours = png_pixels(run_graph(REPO / "graphs" / "sdxl_inpaint.yaml", inputs=dict(
        model=str(sdxl_models["4-channel"]), image=str(picture), mask=str(mask), strength=0.75, **SETTINGS),
        device="cpu", dtype=torch.bfloat16)["image"])
    assert_close_images(ours, diffusers_inpaint(sdxl_models["4-channel"], picture, mask, 0.75, torch.bfloat16))
