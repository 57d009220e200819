"""graphs/sdxl_controlnet.yaml against StableDiffusionXLControlNetPipeline."""

from __future__ import annotations

import PIL.Image
import pytest
import torch
from test_sdxl_cli import run_cli
from test_stable_diffusion_parity import assert_close_images
from tiny_controlnet import save_pattern
from tiny_pipelines import REPO, png_pixels, to_uint8

from tests.models.tiny_checkpoints import perturbed


@pytest.fixture(scope="module")
def tiny_sdxl_controlnet(tiny_sdxl, tmp_path_factory):
    """`ControlNetModel.from_unet` of the tiny SDXL base UNet (with its text_time added embedding), all weights
    perturbed; the image embedding shrinks 4×, like the tiny SDXL VAE."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl[0], subfolder="unet")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16))
    folder = tmp_path_factory.mktemp("sdxl-controlnet") / "cn"
    perturbed(controlnet, 31, scale=0.1).save_pretrained(folder)
    return folder


def test_sdxl_controlnet_graph_matches_diffusers_with_and_without_guess_mode(tiny_sdxl, tiny_sdxl_controlnet,
                                                                             tmp_path):
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    from nodegraph import run_graph

    image = save_pattern(tmp_path / "control.png", 48, 32, 3)
    settings = dict(prompt="a cat", negative_prompt="blurry", steps=4, seed=8)  # [0.2, 0.8): steps 1, 2

    def ours(guess_mode=False):
        return png_pixels(run_graph(REPO / "graphs" / "sdxl_controlnet.yaml", inputs=dict(
            model=str(tiny_sdxl[0]), controlnet=str(tiny_sdxl_controlnet), image=str(image), controlnet_scale=0.8,
            control_start=0.2, control_end=0.8, guess_mode=guess_mode, **settings), device="cpu")["image"])

    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        tiny_sdxl[0], controlnet=ControlNetModel.from_pretrained(tiny_sdxl_controlnet), add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)

    def theirs(scale, guess_mode=False):
        return to_uint8(pipe(settings["prompt"], negative_prompt=settings["negative_prompt"],
                             image=PIL.Image.open(image), num_inference_steps=settings["steps"],
                             controlnet_conditioning_scale=scale, control_guidance_start=0.2, control_guidance_end=0.8,
                             guess_mode=guess_mode, generator=torch.Generator("cpu").manual_seed(settings["seed"]),
                             output_type="np").images)

    expected = theirs(0.8)
    got = ours()
    assert got.shape == (1, 32, 48, 3)
    assert_close_images(got, expected)
    assert (theirs(0.0).int() - expected.int()).abs().max() > 20  # the ControlNet visibly matters
    # guess mode: conditional half only (pooled text and time ids too), residuals weighted 0.1 … 1
    guessed = theirs(0.8, guess_mode=True)
    assert_close_images(ours(guess_mode=True), guessed)
    assert (guessed.int() - expected.int()).abs().max() > 20  # and it is not the normal mode's picture


def test_an_sdxl_inpainting_checkpoint_is_refused_with_a_pointer_to_sdxl_inpaint(tiny_sdxl_inpaint,
                                                                                tiny_sdxl_controlnet, tmp_path, capsys):
    image = save_pattern(tmp_path / "control.png", 48, 32, 3)
    code, err = run_cli(capsys, REPO / "graphs" / "sdxl_controlnet.yaml", tmp_path / "out", model=tiny_sdxl_inpaint,
                        controlnet=tiny_sdxl_controlnet, image=image, steps=2)
    assert code == 1, err
    assert "9 channels" in err and "graphs/sdxl_inpaint.yaml" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
