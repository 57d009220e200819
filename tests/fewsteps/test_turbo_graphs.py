"""SD-Turbo / SDXL-Turbo / SDXL-Lightning settings at diffusers parity: Euler (ancestral) with trailing timesteps
in 1-4 steps, guidance off. graphs/sdxl_turbo.yaml against StableDiffusionXLPipeline on a tiny SDXL with
SDXL-Turbo's scheduler config; graphs/stable_diffusion.yaml with SD-Turbo's settings against
StableDiffusionPipeline; the trailing schedules themselves against diffusers' schedulers."""

from __future__ import annotations

import pytest
import torch

from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

import diffusers  # a test dependency: a broken install must fail, not skip
TURBO_GRAPH = REPO / "graphs" / "sdxl_turbo.yaml"
SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def run(graph, **inputs):
    from nodegraph import run_graph

    return png_pixels(run_graph(graph, inputs=inputs, device="cpu")["image"])


def assert_close(ours, theirs):
    assert ours.shape == theirs.shape
    diff = (ours.int() - theirs.int()).abs().max().item()
    assert diff <= 1, f"max pixel difference {diff} > 1"


@pytest.mark.parametrize("name,cls", [("euler_a", "EulerAncestralDiscreteScheduler"),
                                      ("euler", "EulerDiscreteScheduler")])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8])
def test_trailing_euler_schedules_and_steps_match_diffusers(name, cls, steps):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "schedulers"))
    from scheduler_harness import assert_same_schedule, assert_trajectories_close, denoise

    from nodegraph.schedulers import create_scheduler

    cfg = dict(SD, timestep_spacing="trailing")
    ours, theirs = create_scheduler(cfg, name=name), getattr(diffusers, cls).from_config(cfg)
    a, b = denoise(ours, steps, seed=4), denoise(theirs, steps, seed=4)
    assert_same_schedule(ours, theirs)
    assert ours.timesteps[0] == 999, "trailing starts at the last training timestep"
    assert_trajectories_close(a, b)


@pytest.mark.parametrize("steps", [1])
def test_sdxl_turbo_graph_matches_diffusers(tiny_sdxl_turbo, steps):
    settings = dict(prompt="a photo of a cat", seed=3, steps=steps, height=32, width=32)
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_turbo)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(settings["prompt"], num_inference_steps=steps, guidance_scale=0.0, height=32, width=32,
               generator=torch.Generator("cpu").manual_seed(3), output_type="np")
    assert_close(run(TURBO_GRAPH, model=str(tiny_sdxl_turbo), **settings), to_uint8(out.images))


def test_sdxl_lightning_settings_match_diffusers(tiny_sdxl_turbo):
    """ByteDance/SDXL-Lightning's recipe: EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing"),
    guidance 0, here 2 steps (their 2-step LoRA)."""
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_turbo)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    out = pipe("a red house", num_inference_steps=2, guidance_scale=0.0, height=32, width=32,
               generator=torch.Generator("cpu").manual_seed(9), output_type="np")
    ours = run(TURBO_GRAPH, model=str(tiny_sdxl_turbo), prompt="a red house", seed=9, steps=2, scheduler="euler",
               height=32, width=32)
    assert_close(ours, to_uint8(out.images))


def test_sd_turbo_settings_through_the_sd_graph_match_diffusers(tiny_sd):
    """stabilityai/sd-turbo: the SD pipeline with Euler ancestral, trailing, 1 step, guidance 0."""
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config,
                                                                           timestep_spacing="trailing")
    out = pipe("a cat", num_inference_steps=1, guidance_scale=0.0, height=16, width=16,
               generator=torch.Generator("cpu").manual_seed(2), output_type="np")
    ours = run(SD_GRAPH, model=str(tiny_sd), prompt="a cat", seed=2, steps=1, guidance_scale=0.0,
               scheduler="euler_a", timestep_spacing="trailing", height=16, width=16)
    assert_close(ours, to_uint8(out.images))
    leading = run(SD_GRAPH, model=str(tiny_sd), prompt="a cat", seed=2, steps=1, guidance_scale=0.0,
                  scheduler="euler_a", height=16, width=16)
    assert (ours.int() - leading.int()).abs().max().item() > 5, "the spacing must reach the sampler"


def test_sdxl_graph_lcm_choice_matches_diffusers(tiny_sdxl_turbo):
    """The LCM-LoRA SDXL recipe's sampler: graphs/sdxl.yaml with `scheduler: lcm`, guidance off."""
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_turbo)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.LCMScheduler.from_config(pipe.scheduler.config)
    out = pipe("a cat", num_inference_steps=3, guidance_scale=1.0, height=32, width=32,
               generator=torch.Generator("cpu").manual_seed(6), output_type="np")
    ours = run(REPO / "graphs" / "sdxl.yaml", model=str(tiny_sdxl_turbo), prompt="a cat", seed=6, steps=3,
               guidance_scale=1.0, scheduler="lcm", height=32, width=32)
    assert_close(ours, to_uint8(out.images))
