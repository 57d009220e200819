"""graphs/ddpm.yaml and graphs/img2img.yaml against DDPMPipeline and StableDiffusionImg2ImgPipeline."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from test_stable_diffusion_parity import SCHEDULERS, assert_close_images
from tiny_pipelines import REPO, png_pixels, to_uint8


def run_graph_uint8(graph: str, **inputs) -> torch.Tensor:
    from nodegraph import run_graph

    return png_pixels(run_graph(REPO / "graphs" / graph, inputs=inputs, device="cpu")["image"])


@pytest.mark.parametrize("steps", [1, 6])
def test_ddpm_graph_matches_ddpm_pipeline(tiny_ddpm, steps):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(tiny_ddpm)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(4), output_type="np").images
    ours = run_graph_uint8("ddpm.yaml", model=str(tiny_ddpm), seed=4, steps=steps)
    assert ours.shape == (1, 16, 16, 3)
    assert_close_images(ours, to_uint8(theirs))


@pytest.fixture(scope="module")
def init_image(tmp_path_factory):
    """A smooth colour pattern, 24×16 (a multiple of 8, so no resize is involved)."""
    y, x = np.mgrid[0:16, 0:24]
    rgb = np.stack([x * 10, y * 15, (x + y) * 6], axis=-1).clip(0, 255).astype("uint8")
    path = tmp_path_factory.mktemp("img") / "init.png"
    PIL.Image.fromarray(rgb).save(path)
    return path


@pytest.mark.parametrize("scheduler,strength,batch", [(None, 0.6, 1), ("euler_a", 0.75, 2), ("ddim", 1.0, 1)])
def test_img2img_graph_matches_img2img_pipeline(tiny_sd, init_image, scheduler, strength, batch):
    import diffusers

    pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(tiny_sd, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    theirs = pipe("a cat", image=PIL.Image.open(init_image), strength=strength, num_inference_steps=5,
                  guidance_scale=7.5, num_images_per_prompt=batch, generator=torch.Generator("cpu").manual_seed(2),
                  output_type="np").images
    inputs = dict(model=str(tiny_sd), prompt="a cat", image=str(init_image), strength=strength, steps=5,
                  guidance_scale=7.5, batch_size=batch, seed=2)
    if scheduler is not None:
        inputs["scheduler"] = scheduler
    ours = run_graph_uint8("img2img.yaml", **inputs)
    assert ours.shape == (batch, 16, 24, 3)
    assert_close_images(ours, to_uint8(theirs))
