"""graphs/sdxl.yaml and graphs/sdxl_refiner.yaml make the same images as diffusers' SDXL pipelines (within 1/255),
on a tiny random SDXL base + refiner saved by diffusers (tests/graphs/tiny_sdxl.py)."""

from __future__ import annotations

import pytest
import torch
from test_stable_diffusion_parity import SCHEDULERS, assert_close_images
from tiny_pipelines import REPO, png_pixels, to_uint8

SDXL_GRAPH = REPO / "graphs" / "sdxl.yaml"
REFINER_GRAPH = REPO / "graphs" / "sdxl_refiner.yaml"
_PIPES: dict = {}


def _pipe(kind: str, folder, scheduler: str | None):
    """diffusers' pipeline for `folder`, loaded once per test session, with a fresh scheduler each call."""
    import diffusers

    key = (kind, str(folder))
    if key not in _PIPES:
        cls = diffusers.StableDiffusionXLPipeline if kind == "base" else diffusers.StableDiffusionXLImg2ImgPipeline
        _PIPES[key] = pipe = cls.from_pretrained(folder, add_watermarker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe.own_scheduler = type(pipe.scheduler), pipe.scheduler.config
    pipe = _PIPES[key]
    own_class, own_config = pipe.own_scheduler
    cls = getattr(diffusers, SCHEDULERS[scheduler]) if scheduler else own_class
    pipe.scheduler = cls.from_config(own_config)
    return pipe


def diffusers_sdxl(folder, scheduler=None, *, prompt, prompt_2="", negative_prompt="", negative_prompt_2="",
                   seed, steps, guidance_scale=5.0, guidance_rescale=0.0, height, width, batch_size=1):
    # The graph's empty negative prompts mean "none given", which is what selects force_zeros_for_empty_prompt.
    out = _pipe("base", folder, scheduler)(
        prompt, prompt_2=prompt_2 or None, negative_prompt=negative_prompt or None,
        negative_prompt_2=negative_prompt_2 or None, num_inference_steps=steps, guidance_scale=guidance_scale,
        guidance_rescale=guidance_rescale, height=height, width=width, num_images_per_prompt=batch_size,
        generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    return to_uint8(out.images)


def diffusers_refined(base, refiner, scheduler=None, *, prompt, negative_prompt="", seed, steps, high_noise_frac,
                      guidance_scale=5.0, height, width, batch_size=1):
    """diffusers' documented base + refiner recipe, one generator for both calls."""
    generator = torch.Generator("cpu").manual_seed(seed)
    common = dict(prompt=prompt, negative_prompt=negative_prompt or None, num_inference_steps=steps,
                  guidance_scale=guidance_scale, num_images_per_prompt=batch_size, generator=generator)
    latents = _pipe("base", base, scheduler)(**common, denoising_end=high_noise_frac, height=height, width=width,
                                             output_type="latent").images
    out = _pipe("refiner", refiner, scheduler)(**common, denoising_start=high_noise_frac, image=latents,
                                               output_type="np")
    return to_uint8(out.images)


def nodegraph_images(graph, **inputs):
    from nodegraph import run_graph

    return png_pixels(run_graph(graph, inputs={k: v for k, v in inputs.items() if v is not None}, device="cpu")["image"])


PROMPTS = dict(prompt="a red house", prompt_2="an oil painting", negative_prompt="blurry",
               negative_prompt_2="dark, foggy")


@pytest.mark.parametrize("scheduler", [None, "ddim", "euler_a", "dpmpp_2m"])  # own (Euler) + 3 others
def test_sdxl_graph_matches_diffusers_with_negative_prompt_and_prompt_2_at_non_square_size(tiny_sdxl, scheduler):
    base, _ = tiny_sdxl
    settings = dict(PROMPTS, seed=3, steps=4, height=32, width=48)
    ours = nodegraph_images(SDXL_GRAPH, model=str(base), scheduler=scheduler, **settings)
    assert ours.shape == (1, 32, 48, 3)
    assert_close_images(ours, diffusers_sdxl(base, scheduler, **settings))


def test_sdxl_graph_with_empty_negative_prompt_uses_zeros_like_diffusers(tiny_sdxl):
    base, _ = tiny_sdxl
    settings = dict(prompt="a cat", seed=4, steps=3, height=32, width=32)
    ours = nodegraph_images(SDXL_GRAPH, model=str(base), **settings)
    assert_close_images(ours, diffusers_sdxl(base, **settings))
    # sensitivity: an explicit negative prompt (encoded, not zeros) changes the image
    assert not torch.equal(ours, nodegraph_images(SDXL_GRAPH, model=str(base), negative_prompt="dog", **settings))


def test_sdxl_graph_batch_of_two_with_guidance_rescale_matches_diffusers(tiny_sdxl):
    base, _ = tiny_sdxl
    settings = dict(PROMPTS, seed=6, steps=4, height=48, width=32, batch_size=2, guidance_rescale=0.7)
    ours = nodegraph_images(SDXL_GRAPH, model=str(base), scheduler="euler_a", **settings)
    assert ours.shape[0] == 2 and not torch.equal(ours[0], ours[1])
    assert_close_images(ours, diffusers_sdxl(base, "euler_a", **settings))
    plain = nodegraph_images(SDXL_GRAPH, model=str(base), scheduler="euler_a", **{**settings, "guidance_rescale": 0.0})
    assert not torch.equal(ours, plain), "guidance_rescale 0.7 must change the images"


def test_sdxl_graph_without_guidance_matches_diffusers(tiny_sdxl):
    base, _ = tiny_sdxl
    settings = dict(PROMPTS, seed=8, steps=3, guidance_scale=1.0, height=32, width=32)
    ours = nodegraph_images(SDXL_GRAPH, model=str(base), **settings)
    assert_close_images(ours, diffusers_sdxl(base, **settings))
    # sensitivity: prompt_2 reaches the second text encoder
    assert not torch.equal(ours, nodegraph_images(SDXL_GRAPH, model=str(base), **{**settings, "prompt_2": ""}))


@pytest.mark.parametrize("high_noise_frac,scheduler,batch_size", [(0.8, None, 1), (0.5, "euler_a", 2)])
def test_refiner_graph_matches_diffusers_base_then_refiner_recipe(tiny_sdxl, high_noise_frac, scheduler, batch_size):
    base, refiner = tiny_sdxl
    settings = dict(prompt="a cat", negative_prompt="a dog", seed=5, steps=6, height=32, width=48,
                    batch_size=batch_size)
    ours = nodegraph_images(REFINER_GRAPH, model=str(base), refiner=str(refiner), high_noise_frac=high_noise_frac,
                            scheduler=scheduler, **settings)
    assert ours.shape == (batch_size, 32, 48, 3)
    assert_close_images(ours, diffusers_refined(base, refiner, scheduler, high_noise_frac=high_noise_frac,
                                                **settings))
    # sensitivity: the refiner's part matters (a different aesthetic score changes the image)
    other = nodegraph_images(REFINER_GRAPH, model=str(base), refiner=str(refiner), high_noise_frac=high_noise_frac,
                             scheduler=scheduler, aesthetic_score=1.0, **settings)
    assert not torch.equal(ours, other)


def test_sdxl_unet_runs_once_per_step_on_the_guidance_batch(tiny_sdxl, monkeypatch):
    from nodegraph import run_graph
    from nodegraph.models.unet_2d_condition import UNet2DConditionModel

    base, refiner = tiny_sdxl
    calls = []
    forward = UNet2DConditionModel.forward

    def counting(self, sample, *args, **kwargs):
        calls.append((self.config.cross_attention_dim, sample.shape[0]))
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counting)
    run_graph(SDXL_GRAPH, inputs=dict(model=str(base), steps=5, batch_size=2, height=32, width=32), device="cpu")
    assert calls == [(72, 4)] * 5  # one call per step: negative and positive halves batched together
    calls.clear()
    run_graph(SDXL_GRAPH, inputs=dict(model=str(base), steps=3, guidance_scale=1.0, height=32, width=32),
              device="cpu")
    assert calls == [(72, 1)] * 3
    calls.clear()
    run_graph(REFINER_GRAPH, inputs=dict(model=str(base), refiner=str(refiner), steps=10, high_noise_frac=0.7,
                                         height=32, width=32), device="cpu")
    # Euler, 10 "leading" steps (901, 801, …, 1): the switch at 1000·(1 − 0.7) = 300 leaves 3 to the refiner
    assert calls == [(72, 2)] * 7 + [(40, 2)] * 3
