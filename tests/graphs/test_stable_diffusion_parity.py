"""graphs/stable_diffusion.yaml makes the same images as diffusers' StableDiffusionPipeline (within 1/255)."""

from __future__ import annotations

import pytest
import torch
from tiny_pipelines import REPO, png_pixels, to_uint8

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
SCHEDULERS = {  # the graph's short name → diffusers class
    "pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler", "lms": "LMSDiscreteScheduler",
}


def diffusers_images(folder, scheduler=None, *, prompt, negative_prompt="", seed, steps, guidance_scale,
                     height, width, batch_size=1):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    out = pipe(prompt, negative_prompt=negative_prompt or None, num_inference_steps=steps,
               guidance_scale=guidance_scale, height=height, width=width, num_images_per_prompt=batch_size,
               generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    return to_uint8(out.images)  # (B, H, W, 3)


def nodegraph_images(folder, scheduler=None, **inputs):
    from nodegraph import run_graph

    values = dict(model=str(folder), **inputs)
    if scheduler is not None:
        values["scheduler"] = scheduler
    image = run_graph(SD_GRAPH, inputs=values, device="cpu")["image"]
    return png_pixels(image)


def assert_close_images(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    diff = (ours.int() - theirs.int()).abs()
    assert diff.max().item() <= 1, f"max pixel difference {diff.max().item()} > 1 ({(diff > 1).sum().item()} pixels)"


@pytest.mark.parametrize("scheduler", [None, *SCHEDULERS])
def test_sd_graph_matches_diffusers_for_every_scheduler(tiny_sd, scheduler):
    settings = dict(prompt="a photo of a cat", seed=7, steps=5, guidance_scale=7.5, height=16, width=16)
    assert_close_images(nodegraph_images(tiny_sd, scheduler, **settings),
                        diffusers_images(tiny_sd, scheduler, **settings))


@pytest.mark.parametrize("scheduler", ["pndm", "euler_a", "dpmpp_2m"])
def test_sd_graph_matches_diffusers_with_negative_prompt_at_non_square_size(tiny_sd, scheduler):
    settings = dict(prompt="a red house", negative_prompt="blurry, dark", seed=3, steps=4, guidance_scale=5.0,
                    height=16, width=24)
    ours = nodegraph_images(tiny_sd, scheduler, **settings)
    assert ours.shape == (1, 16, 24, 3)
    assert_close_images(ours, diffusers_images(tiny_sd, scheduler, **settings))


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a"])
def test_sd_graph_batch_of_three_matches_num_images_per_prompt(tiny_sd, scheduler):
    settings = dict(prompt="a cat", seed=11, steps=4, guidance_scale=7.5, height=16, width=16, batch_size=3)
    ours = nodegraph_images(tiny_sd, scheduler, **settings)
    assert ours.shape[0] == 3
    assert not torch.equal(ours[0], ours[1]), "the three images of a batch must differ"
    assert_close_images(ours, diffusers_images(tiny_sd, scheduler, **settings))


def test_sd_graph_without_guidance_matches_diffusers(tiny_sd):
    settings = dict(prompt="a cat", seed=5, steps=4, guidance_scale=1.0, height=16, width=16)
    assert_close_images(nodegraph_images(tiny_sd, "euler", **settings),
                        diffusers_images(tiny_sd, "euler", **settings))


def test_same_seed_twice_gives_bit_identical_images(tiny_sd):
    settings = dict(prompt="a cat", seed=9, steps=3, guidance_scale=7.5, height=16, width=16)
    first = nodegraph_images(tiny_sd, "euler_a", **settings)
    assert torch.equal(first, nodegraph_images(tiny_sd, "euler_a", **settings))
    assert not torch.equal(first, nodegraph_images(tiny_sd, "euler_a", **{**settings, "seed": 10}))
