"""SD2.x-v and 9-channel inpainting single files: diffusers' results from the same file, and the prediction type
rule for SD2 files that cannot tell ε from v."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.loading import load_component
from test_single_file_sd1 import SETTINGS, nodegraph_image
from tests.graphs.tiny_pipelines import to_uint8


def diffusers_image(pipe, prediction_type=None) -> torch.Tensor:
    if prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)
    pipe.set_progress_bar_config(disable=True)
    s = SETTINGS
    out = pipe(s["prompt"], negative_prompt=s["negative_prompt"], num_inference_steps=s["steps"],
               guidance_scale=s["guidance_scale"], height=s["height"], width=s["width"],
               generator=torch.Generator("cpu").manual_seed(s["seed"]), output_type="np")
    return to_uint8(out.images)


@pytest.fixture(scope="module")
def sd2_pipes(sd2_folder, sd2_file):
    import diffusers

    folder = diffusers.StableDiffusionPipeline.from_pretrained(sd2_folder, safety_checker=None)
    single = diffusers.StableDiffusionPipeline.from_single_file(
        str(sd2_file), config=str(sd2_folder), local_files_only=True, safety_checker=None)
    return folder, single


@pytest.fixture(scope="module")
def sd2_v_image(sd2_pipes):
    return diffusers_image(sd2_pipes[1])


def test_fixture_sd2_single_file_gives_diffusers_the_folder_image(sd2_pipes, sd2_v_image):
    folder, single = sd2_pipes
    assert single.scheduler.config.prediction_type == "v_prediction"
    assert torch.equal(diffusers_image(folder), sd2_v_image)


def test_sd2_v_single_file_image_matches_diffusers(sd2_v_image, sd2_file, sd2_folder):
    theirs = sd2_v_image
    ours = nodegraph_image(model=str(sd2_file), config=str(sd2_folder))
    assert (ours.int() - theirs.int()).abs().max().item() <= 1


def test_prediction_type_override_matches_diffusers_with_that_scheduler(sd2_pipes, sd2_v_image, sd2_file,
                                                                         sd2_folder):
    theirs = diffusers_image(sd2_pipes[0], prediction_type="epsilon")
    ours = nodegraph_image(model=str(sd2_file), config=str(sd2_folder), prediction_type="epsilon")
    assert (ours.int() - theirs.int()).abs().max().item() <= 1
    assert (sd2_v_image.int() - theirs.int()).abs().max().item() > 1, "ε and v must give different images here"


def test_sd2_prediction_type_follows_diffusers_rule(sd2_file, sd2_folder, tmp_path):
    # diffusers (single_file_utils): an SD2 file gets stabilityai/stable-diffusion-2-1's v-prediction scheduler;
    # its legacy rule makes a checkpoint saved at global step 875000 (the 512 base model) ε.
    assert load_component(sd2_file, "scheduler")["prediction_type"] == "v_prediction"
    from safetensors.torch import load_file

    base = tmp_path / "512-base-ema.ckpt"
    torch.save({"state_dict": load_file(sd2_file), "global_step": 875000}, base)
    assert load_component(base, "scheduler", allow_pickle=True)["prediction_type"] == "epsilon"
    other = tmp_path / "768-v-ema.ckpt"
    torch.save({"state_dict": load_file(sd2_file), "global_step": 110000}, other)
    assert load_component(other, "scheduler", allow_pickle=True)["prediction_type"] == "v_prediction"
    # given a config, the config's scheduler is used as it is
    assert load_component(sd2_file, "scheduler", config=str(sd2_folder))["_class_name"] == "DDIMScheduler"


def test_sd2_text_encoder_from_open_clip_layout_matches_diffusers(sd2_pipes, sd2_file, sd2_folder):
    ids = sd2_pipes[1].tokenizer(["a red house"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, -1].item() == sd2_pipes[1].tokenizer.convert_tokens_to_ids("!")
    ours = load_component(sd2_file, "text_encoder", config=str(sd2_folder))
    with torch.no_grad():
        assert torch.equal(ours(ids)[0], sd2_pipes[1].text_encoder(ids)[0])


def test_inpainting_unet_from_single_file_matches_diffusers(inpaint_file, inpaint_folder):
    import diffusers

    folder = diffusers.UNet2DConditionModel.from_pretrained(inpaint_folder / "unet")
    single = diffusers.UNet2DConditionModel.from_single_file(
        str(inpaint_file), config=str(inpaint_folder), subfolder="unet", local_files_only=True)
    ours = load_component(inpaint_file, "unet", config=str(inpaint_folder))
    assert ours.config.in_channels == 9
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 9, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        expected = folder(x, 10, text).sample
        assert torch.equal(single(x, 10, text).sample, expected), "fixture: single file ≠ folder in diffusers"
        got = ours(x, 10, text)
        assert (got - expected).abs().max().item() < 1e-5
        # sensitivity: the mask channels matter
        x2 = x.clone()
        x2[:, 4] = 0
        assert (ours(x2, 10, text) - got).abs().max().item() > 1e-3


def test_inpainting_single_file_image_through_inpaint_graph_matches_diffusers(inpaint_file, inpaint_folder,
                                                                                 tmp_path):
    import diffusers
    import PIL.Image

    from nodegraph import run_graph
    from tests.graphs.tiny_inpaint import save_picture_and_mask
    from tests.graphs.tiny_pipelines import REPO, png_pixels

    picture, mask = save_picture_and_mask(tmp_path)
    settings = dict(prompt="a cat", negative_prompt="blurry", seed=5, steps=4, guidance_scale=7.5)

    def diffusers_inpaint(pipe, mask_file):
        pipe.set_progress_bar_config(disable=True)
        out = pipe(settings["prompt"], negative_prompt=settings["negative_prompt"], image=PIL.Image.open(picture),
                   mask_image=PIL.Image.open(mask_file), strength=1.0, height=16, width=24,
                   num_inference_steps=settings["steps"], guidance_scale=settings["guidance_scale"],
                   generator=torch.Generator("cpu").manual_seed(settings["seed"]), output_type="np")
        return to_uint8(out.images)

    folder = diffusers.StableDiffusionInpaintPipeline.from_pretrained(inpaint_folder, safety_checker=None)
    single = diffusers.StableDiffusionInpaintPipeline.from_single_file(
        str(inpaint_file), config=str(inpaint_folder), local_files_only=True, safety_checker=None)
    theirs = diffusers_inpaint(single, mask)
    assert torch.equal(theirs, diffusers_inpaint(folder, mask)), "fixture: single file ≠ folder in diffusers"

    out = run_graph(REPO / "graphs" / "inpaint.yaml", device="cpu", inputs=dict(
        model=str(inpaint_file), config=str(inpaint_folder), image=str(picture), mask=str(mask), strength=1.0,
        **settings))
    ours = png_pixels(out["image"])
    assert ours.shape == theirs.shape == (1, 16, 24, 3)
    assert (ours.int() - theirs.int()).abs().max() <= 1
    # sensitivity: keeping everything (an all-black mask) gives diffusers another image
    black = tmp_path / "black.png"
    PIL.Image.new("L", (24, 16)).save(black)
    assert (diffusers_inpaint(single, black).int() - theirs.int()).abs().max() > 20
