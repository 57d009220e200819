"""graphs/z_image.yaml against diffusers' ZImagePipeline on the tiny random Z-Image folder, in the same test:
every pixel of the PNG within 1/255 (fp32), and the same settings changed move the image by more than 5/255."""

from __future__ import annotations

import pytest
import torch

from nodegraph import run_graph
from tests.graphs.tiny_pipelines import png_pixels, to_uint8

GRAPH = "graphs/z_image.yaml"


@pytest.fixture(scope="module")
def pipe(tiny_z_image):
    from diffusers import ZImagePipeline

    p = ZImagePipeline.from_pretrained(tiny_z_image)
    p.set_progress_bar_config(disable=True)
    return p


def ours(folder, **inputs) -> torch.Tensor:
    return png_pixels(run_graph(GRAPH, inputs={"model": str(folder), **inputs})["image"]).int()


def theirs(pipe, prompt, *, steps, width, height, seed=0, guidance_scale=0.0, negative_prompt="", batch_size=1,
           **kwargs) -> torch.Tensor:
    images = pipe(prompt, negative_prompt=negative_prompt or None, height=height, width=width,
                  num_inference_steps=steps, guidance_scale=guidance_scale, num_images_per_prompt=batch_size,
                  generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **kwargs).images
    return to_uint8(images).int()


def assert_parity(folder, pipe, **settings) -> torch.Tensor:
    got, expected = ours(folder, **settings), theirs(pipe, **settings)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1, settings
    return got


def moved(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a - b).abs().max())


def test_turbo_settings_without_guidance_match_and_seed_and_prompt_move_the_image(tiny_z_image, pipe):
    settings = dict(prompt="a red fox in the snow", steps=2, width=32, height=32)
    image = assert_parity(tiny_z_image, pipe, **settings)
    assert image.shape == (1, 32, 32, 3)
    assert moved(image, ours(tiny_z_image, **{**settings, "seed": 1})) > 5
    assert moved(image, ours(tiny_z_image, **{**settings, "prompt": "a blue whale"})) > 5


def test_guidance_with_a_negative_prompt_on_a_non_square_image_matches(tiny_z_image, pipe):
    settings = dict(prompt="a cat on a table", negative_prompt="blurry, low quality", guidance_scale=3.0, steps=3,
                    width=48, height=32)
    image = assert_parity(tiny_z_image, pipe, **settings)
    assert image.shape == (1, 32, 48, 3)
    assert moved(image, ours(tiny_z_image, **{**settings, "negative_prompt": ""})) > 5
    assert moved(image, ours(tiny_z_image, **{**settings, "guidance_scale": 1.0})) > 5


def test_cfg_normalization_and_truncation_on_a_batch_of_two_match(tiny_z_image, pipe):
    # 3 steps at shift 3: sigmas 1, 0.857, 0.6, so 1 - t/1000 is 0, 0.143, 0.4: truncation 0.2 guides step 1 only
    settings = dict(prompt="a lighthouse at dusk", guidance_scale=4.0, cfg_normalization=1.0, cfg_truncation=0.2,
                    steps=3, width=32, height=48, batch_size=2, seed=7)
    image = assert_parity(tiny_z_image, pipe, **settings)
    assert image.shape == (2, 48, 32, 3) and moved(image[0], image[1]) > 5
    assert moved(image, ours(tiny_z_image, **{**settings, "cfg_normalization": 0.0})) > 5
    assert moved(image, ours(tiny_z_image, **{**settings, "cfg_truncation": 1.0})) > 5


def test_bf16_with_guidance_and_normalization_matches_diffusers_bf16_run(tiny_z_image):
    from diffusers import ZImagePipeline

    bf16 = ZImagePipeline.from_pretrained(tiny_z_image, torch_dtype=torch.bfloat16)
    bf16.set_progress_bar_config(disable=True)
    settings = dict(prompt="a cat on a table", negative_prompt="blurry", guidance_scale=3.0, cfg_normalization=1.0,
                    steps=3, width=48, height=32)
    expected = theirs(bf16, **settings)
    assert moved(expected, theirs(bf16, **settings)) == 0  # diffusers' own bf16 run is deterministic here
    got = png_pixels(run_graph(GRAPH, inputs={"model": str(tiny_z_image), **settings}, dtype=torch.bfloat16)["image"])
    assert (got.int() - expected).abs().max() <= 1


def test_the_negative_prompt_is_encoded_only_when_guidance_is_on(tiny_z_image, monkeypatch):
    import nodegraph.models.qwen3_text as qwen3

    encoded, encode = [], qwen3.encode_prompts
    monkeypatch.setattr(qwen3, "encode_prompts", lambda te, tok, prompts, *a, **k: encoded.append(prompts) or
                        encode(te, tok, prompts, *a, **k))
    settings = dict(prompt="a cat", negative_prompt="blurry", steps=1, width=16, height=16)
    ours(tiny_z_image, **settings)
    assert encoded == [["a cat"]]  # diffusers skips the negative without CFG, and so does the graph
    ours(tiny_z_image, **settings, guidance_scale=1.5)
    assert sorted(encoded[1:]) == [["a cat"], ["blurry"]]
