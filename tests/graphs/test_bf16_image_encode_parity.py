"""bf16 img2img and inpainting (SD 1.x) against diffusers' pipelines run in bf16 in the same test: max Δ 0.

Where the image enters the VAE, bf16 rounding depends on memory layout, not only on the arithmetic. diffusers'
image processor computes 2x − 1 in float32 on a channels-last view (the HWC numpy array, transposed), the
encoder's convolutions keep that layout, its mid-block attention normalises a (B, C, HW) view, and img2img's
latents reach the UNet channels-last, whose transformer blocks return contiguous tensors. Before nodegraph did
the same, these images differed from the pipelines' by 12/255 (img2img), 23/255 (inpainting, 4-channel UNet)
and 10/255 (9-channel UNet below strength 1), hires fix's image upscaler by 16/255; fp32 was equal all along
(tests next to this file).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from test_inpaint_parity import SETTINGS as INPAINT
from tiny_inpaint import save_picture_and_mask
from tiny_pipelines import REPO, png_pixels, to_uint8

BF16 = torch.bfloat16


@pytest.fixture(scope="module")
def picture_and_mask(tmp_path_factory):
    return save_picture_and_mask(tmp_path_factory.mktemp("bf16-inpaint"))


def _max_difference(ours: torch.Tensor, theirs: torch.Tensor) -> int:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours.int() - theirs.int()).abs().max().item()


def test_img2img_graph_in_bf16_equals_the_img2img_pipeline_in_bf16(tiny_sd, picture_and_mask):
    from diffusers import StableDiffusionImg2ImgPipeline

    from nodegraph import run_graph

    picture, _ = picture_and_mask
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(tiny_sd, safety_checker=None, torch_dtype=BF16)
    pipe.set_progress_bar_config(disable=True)
    theirs = to_uint8(pipe("a cat", image=PIL.Image.open(picture), strength=0.6, num_inference_steps=5,
                           guidance_scale=7.5, num_images_per_prompt=2,
                           generator=torch.Generator("cpu").manual_seed(2), output_type="np").images)
    ours = png_pixels(run_graph(REPO / "graphs" / "img2img.yaml", inputs=dict(
        model=str(tiny_sd), prompt="a cat", image=str(picture), strength=0.6, steps=5, guidance_scale=7.5,
        batch_size=2, seed=2), device="cpu", dtype=BF16)["image"])
    assert _max_difference(ours, theirs) == 0
    picture_pixels = torch.from_numpy(np.array(PIL.Image.open(picture).convert("RGB")))
    assert _max_difference(theirs, picture_pixels.expand_as(theirs)) > 20  # the picture was changed, not copied


# below strength 1 both UNets start from the encoded image; 9-channel at strength 1 was already equal
@pytest.mark.parametrize("kind,strength", [("4-channel", 0.75), ("9-channel", 0.75)])
def test_inpaint_graph_in_bf16_equals_the_inpaint_pipeline_in_bf16(tiny_sd, tiny_sd_inpaint, picture_and_mask,
                                                                   kind, strength):
    from diffusers import StableDiffusionInpaintPipeline

    from nodegraph import run_graph

    model = tiny_sd_inpaint if kind == "9-channel" else tiny_sd
    picture, mask = picture_and_mask
    pipe = StableDiffusionInpaintPipeline.from_pretrained(model, safety_checker=None, torch_dtype=BF16)
    pipe.set_progress_bar_config(disable=True)
    theirs = to_uint8(pipe(INPAINT["prompt"], negative_prompt=INPAINT["negative_prompt"], image=PIL.Image.open(picture),
                           mask_image=PIL.Image.open(mask), strength=strength, height=16, width=24,
                           num_inference_steps=INPAINT["steps"], guidance_scale=INPAINT["guidance_scale"],
                           num_images_per_prompt=INPAINT["batch_size"],
                           generator=torch.Generator("cpu").manual_seed(INPAINT["seed"]), output_type="np").images)
    ours = png_pixels(run_graph(REPO / "graphs" / "inpaint.yaml", inputs=dict(
        model=str(model), image=str(picture), mask=str(mask), strength=strength, **INPAINT),
        device="cpu", dtype=BF16)["image"])
    assert _max_difference(ours, theirs) == 0


def test_hires_fix_image_upscaler_in_bf16_equals_the_two_diffusers_calls_in_bf16(tiny_sd):
    """The image upscaler decodes, resizes and encodes again, then runs img2img on channels-last latents."""
    from test_hires_fix import HIRES, SETTINGS, by_hand

    from nodegraph import run_graph

    ours = png_pixels(run_graph(REPO / "graphs" / "hires_fix.yaml", inputs=dict(
        model=str(tiny_sd), upscaler="image", **SETTINGS, **HIRES), device="cpu", dtype=BF16)["image"])
    theirs, enlarged = by_hand(tiny_sd, "image", dtype=BF16)
    assert _max_difference(ours, theirs) == 0
    assert np.abs(np.asarray(enlarged[0]).astype(int) - theirs[0].numpy().astype(int)).max() > 20  # img2img ran
