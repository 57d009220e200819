"""graphs/inpaint.yaml against StableDiffusionInpaintPipeline, with 9-channel and 4-channel UNets."""

from __future__ import annotations

import functools

import PIL.Image
import pytest
import torch
from test_stable_diffusion_parity import assert_close_images
from tiny_inpaint import save_picture_and_mask
from tiny_pipelines import REPO, png_pixels, to_uint8

SETTINGS = dict(prompt="a cat", negative_prompt="blurry", seed=5, steps=6, guidance_scale=7.5, batch_size=2)


@pytest.fixture(scope="module")
def picture_and_mask(tmp_path_factory):
    return save_picture_and_mask(tmp_path_factory.mktemp("inpaint"))


@functools.cache
def inpaint_pipeline(model):
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(model, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_inpaint(model, picture, mask, strength):
    pipe = inpaint_pipeline(model)
    out = pipe(SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"], image=PIL.Image.open(picture),
               mask_image=PIL.Image.open(mask), strength=strength, height=16, width=24,
               num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"],
               num_images_per_prompt=SETTINGS["batch_size"],
               generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np")
    return to_uint8(out.images)


def nodegraph_inpaint(model, picture, mask, strength):
    from nodegraph import run_graph

    out = run_graph(REPO / "graphs" / "inpaint.yaml", inputs=dict(
        model=str(model), image=str(picture), mask=str(mask), strength=strength, **SETTINGS), device="cpu")
    return png_pixels(out["image"])


@pytest.mark.parametrize("kind,strength", [("9-channel", 1.0), ("4-channel", 0.75)])
def test_inpaint_graph_matches_diffusers(tiny_sd, tiny_sd_inpaint, picture_and_mask, kind, strength):
    model = tiny_sd_inpaint if kind == "9-channel" else tiny_sd
    picture, mask = picture_and_mask
    ours = nodegraph_inpaint(model, picture, mask, strength)
    theirs = diffusers_inpaint(model, picture, mask, strength)
    assert ours.shape == (2, 16, 24, 3)  # the image's size
    assert_close_images(ours, theirs)
    # sensitive to the mask: with everything kept (an all-black mask) diffusers gives another image
    black = mask.parent / "black.png"
    PIL.Image.new("L", (24, 16)).save(black)
    assert (diffusers_inpaint(model, picture, black, strength).int() - theirs.int()).abs().max() > 10  # ten times the tolerance
