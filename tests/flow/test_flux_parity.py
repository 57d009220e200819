"""graphs/flux.yaml against diffusers' FluxPipeline on the tiny random Flux folders (dev and schnell), in the same
test: every pixel of the PNG within 1/255 (fp32), and each setting changed moves the image by more than 5/255."""

from __future__ import annotations

import warnings

import pytest
import torch

from nodegraph import run_graph
from nodegraph.nodes.flow_flux import FluxWarning
from tests.graphs.tiny_pipelines import png_pixels, to_uint8

GRAPH = "graphs/flux.yaml"


def load_pipe(folder):
    from diffusers import FluxPipeline

    p = FluxPipeline.from_pretrained(folder)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def dev(tiny_flux_dev):
    return tiny_flux_dev, load_pipe(tiny_flux_dev)


@pytest.fixture(scope="module")
def schnell(tiny_flux_schnell):
    return tiny_flux_schnell, load_pipe(tiny_flux_schnell)


def ours(folder, **inputs) -> torch.Tensor:
    return png_pixels(run_graph(GRAPH, inputs={"model": str(folder), **inputs})["image"]).int()


def theirs(pipe, prompt, *, steps, width, height, seed=0, guidance=3.5, max_sequence_length=512, batch_size=1,
           prompt_2="", negative_prompt="", true_cfg_scale=1.0) -> torch.Tensor:
    images = pipe(prompt, prompt_2=prompt_2 or None, negative_prompt=negative_prompt or None,
                  true_cfg_scale=true_cfg_scale, height=height, width=width, num_inference_steps=steps,
                  guidance_scale=guidance, num_images_per_prompt=batch_size, max_sequence_length=max_sequence_length,
                  generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
    return to_uint8(images).int()


def assert_parity(model, **settings) -> torch.Tensor:
    folder, pipe = model
    got, expected = ours(folder, **settings), theirs(pipe, **settings)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1, settings
    return got


def moved(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a - b).abs().max())


def test_dev_with_two_guidance_values_on_a_non_square_image_matches(dev):
    settings = dict(prompt="a red fox in fresh snow", steps=3, width=48, height=32, max_sequence_length=40)
    image = assert_parity(dev, **settings, guidance=3.5)
    assert image.shape == (1, 32, 48, 3)
    other = assert_parity(dev, **settings, guidance=1.5)
    assert moved(image, other) > 5
    assert moved(image, ours(dev[0], **settings, seed=1)) > 5
    assert moved(image, ours(dev[0], **{**settings, "prompt": "a lighthouse at dusk"})) > 5  # CLIP and T5 both
    assert moved(image, ours(dev[0], **{**settings, "max_sequence_length": 16})) > 5  # the padding is attended


def test_a_batch_of_two_with_prompt_2_for_t5_matches(dev):
    settings = dict(prompt="a cat on the table", prompt_2="a watercolor painting of a horse", steps=2, width=32,
                    height=48, batch_size=2, seed=7, max_sequence_length=24)
    image = assert_parity(dev, **settings)
    assert image.shape == (2, 48, 32, 3) and moved(image[0], image[1]) > 5
    assert moved(image, ours(dev[0], **{**settings, "prompt_2": ""})) > 5  # empty prompt_2 = prompt, for T5


def test_true_cfg_with_a_negative_prompt_matches(dev):
    settings = dict(prompt="a lighthouse at dusk", negative_prompt="blurry, low quality", true_cfg_scale=2.5,
                    steps=2, width=32, height=32, max_sequence_length=24)
    image = assert_parity(dev, **settings)
    assert moved(image, ours(dev[0], **{**settings, "true_cfg_scale": 1.0})) > 5
    assert moved(image, ours(dev[0], **{**settings, "negative_prompt": "ugly dog"})) > 5


def test_schnell_is_detected_runs_its_defaults_and_ignores_guidance_with_a_warning(schnell):
    folder, pipe = schnell
    settings = dict(prompt="a photo of an astronaut riding a horse on the moon", width=32, height=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FluxWarning)  # the default guidance gives no warning
        got = ours(folder, **settings)
    expected = theirs(pipe, **settings, steps=4, max_sequence_length=256)  # schnell's card: 4 steps, 256 tokens
    assert (got - expected).abs().max() <= 1
    with pytest.warns(FluxWarning, match="schnell"):
        assert moved(got, ours(folder, **settings, guidance=7.0)) == 0
    assert moved(got, ours(folder, **settings, steps=2)) > 5
    assert moved(got, ours(folder, **settings, max_sequence_length=512)) > 5


def test_bf16_dev_with_true_cfg_matches_diffusers_bf16_run(tiny_flux_dev):
    from diffusers import FluxPipeline

    bf16 = FluxPipeline.from_pretrained(tiny_flux_dev, torch_dtype=torch.bfloat16)
    bf16.set_progress_bar_config(disable=True)
    settings = dict(prompt="a cat on the table", negative_prompt="blurry", true_cfg_scale=2.0, steps=3, width=48,
                    height=32, max_sequence_length=24)
    expected = theirs(bf16, **settings)
    assert moved(expected, theirs(bf16, **settings)) == 0  # diffusers' own bf16 run is deterministic here
    got = png_pixels(run_graph(GRAPH, inputs={"model": str(tiny_flux_dev), **settings}, dtype=torch.bfloat16)["image"])
    assert (got.int() - expected).abs().max() <= 1
    assert moved(got.int(), ours(tiny_flux_dev, **settings)) > 1  # bf16 is not fp32's image
