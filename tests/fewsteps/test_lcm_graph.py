"""graphs/lcm.yaml and the `lcm` / `tcd` choices of graphs/stable_diffusion.yaml make diffusers' images (within
1/255): StableDiffusionPipeline with LCMScheduler / TCDScheduler (with an LCM-style LoRA through LoadLoRA), and
LatentConsistencyModelPipeline for an LCM-distilled UNet whose guidance scale is an input."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

import diffusers  # a test dependency: a broken install must fail, not skip
LCM_GRAPH = REPO / "graphs" / "lcm.yaml"
SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
SIZE = dict(height=16, width=16)


def run(graph, **inputs):
    from nodegraph import run_graph

    return png_pixels(run_graph(graph, inputs=inputs, device="cpu")["image"])


def sd_pipeline(folder, scheduler: str, lora=None):
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    if lora is not None:
        pipe.load_lora_weights(str(lora), adapter_name="lcm")
    return pipe


def oracle(pipe, *, prompt, seed, steps, guidance_scale, negative_prompt=None, **extra):
    out = pipe(prompt, negative_prompt=negative_prompt, num_inference_steps=steps, guidance_scale=guidance_scale,
               generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **SIZE, **extra)
    return to_uint8(out.images)


def assert_close(ours, theirs):
    assert ours.shape == theirs.shape
    diff = (ours.int() - theirs.int()).abs().max().item()
    assert diff <= 1, f"max pixel difference {diff} > 1"


@pytest.fixture(scope="module")
def lcm_lora_images(tiny_sd, lcm_lora):
    """(nodegraph, diffusers, nodegraph without the LoRA) images of the LCM-LoRA recipe: 4 steps, guidance off."""
    settings = dict(prompt="a photo of a cat", seed=3, steps=4, guidance_scale=1.0)
    ours = run(LCM_GRAPH, model=str(tiny_sd), lora=str(lcm_lora), **settings, **SIZE)
    theirs = oracle(sd_pipeline(tiny_sd, "LCMScheduler", lcm_lora), **settings)
    return ours, theirs, run(LCM_GRAPH, model=str(tiny_sd), **settings, **SIZE)


def test_lcm_graph_with_lcm_lora_matches_diffusers(lcm_lora_images):
    ours, theirs, _ = lcm_lora_images
    assert_close(ours, theirs)


def test_lcm_lora_moves_the_image(lcm_lora_images):
    ours, _, without = lcm_lora_images
    assert (ours.int() - without.int()).abs().max().item() > 10


@pytest.mark.parametrize("steps,guidance", [(2, 1.5)])
def test_lcm_graph_steps_and_guidance_match_diffusers(tiny_sd, steps, guidance):
    settings = dict(prompt="a red house", seed=5, steps=steps, guidance_scale=guidance)
    assert_close(run(LCM_GRAPH, model=str(tiny_sd), **settings, **SIZE),
                 oracle(sd_pipeline(tiny_sd, "LCMScheduler"), **settings))


def test_tcd_with_gamma_matches_diffusers(tiny_sd, lcm_lora):
    settings = dict(prompt="a photo of a cat", seed=8, steps=4, guidance_scale=1.0)
    ours = run(LCM_GRAPH, model=str(tiny_sd), lora=str(lcm_lora), scheduler="tcd", eta=0.3, **settings, **SIZE)
    theirs = oracle(sd_pipeline(tiny_sd, "TCDScheduler", lcm_lora), eta=0.3, **settings)
    assert_close(ours, theirs)


@pytest.mark.parametrize("scheduler,cls", [("lcm", "LCMScheduler")])
def test_sd_graph_scheduler_choice_matches_diffusers(tiny_sd, scheduler, cls):
    settings = dict(prompt="a photo of a cat", seed=2, steps=4, guidance_scale=7.5, negative_prompt="blurry")
    ours = run(SD_GRAPH, model=str(tiny_sd), scheduler=scheduler, **settings, **SIZE)
    assert_close(ours, oracle(sd_pipeline(tiny_sd, cls), **settings))


@pytest.mark.parametrize("guidance", [8.0])
def test_lcm_distilled_unet_reads_guidance_as_input_like_diffusers(tiny_lcm, guidance):
    settings = dict(prompt="a photo of a cat", seed=4, steps=4, guidance_scale=guidance)
    pipe = diffusers.LatentConsistencyModelPipeline.from_pretrained(tiny_lcm, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    theirs = oracle(pipe, **settings)
    assert_close(run(LCM_GRAPH, model=str(tiny_lcm), **settings, **SIZE), theirs)


def test_guidance_embedding_changes_the_image(tiny_lcm):
    settings = dict(model=str(tiny_lcm), prompt="a photo of a cat", seed=4, steps=2, **SIZE)
    a, b = run(LCM_GRAPH, guidance_scale=8.0, **settings), run(LCM_GRAPH, guidance_scale=2.0, **settings)
    assert (a.int() - b.int()).abs().max().item() > 5


def test_negative_prompt_on_a_distilled_guidance_unet_warns_and_is_ignored(tiny_lcm):
    from nodegraph.nodes.few_steps import FewStepsWarning

    settings = dict(model=str(tiny_lcm), prompt="a cat", seed=1, steps=2, guidance_scale=8.0, **SIZE)
    with pytest.warns(FewStepsWarning, match=r"guidance: `negative_prompt` is ignored.*time_cond_proj_dim=16"):
        with_negative = run(LCM_GRAPH, negative_prompt="blurry", **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewStepsWarning)
        plain = run(LCM_GRAPH, **settings)
    assert torch.equal(with_negative, plain)
