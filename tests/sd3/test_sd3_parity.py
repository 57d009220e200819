"""graphs/sd3.yaml against diffusers' StableDiffusion3Pipeline on the tiny random SD3.5-like folder
(tests/sd3/tiny_sd3.py), run in the same test: every pixel of the PNG within 1/255 (fp32) with a negative prompt,
three different prompts, a batch of 2 and skip-layer guidance; and each of those settings, changed, moves the
image by more than 5/255 (so the parity would notice it being ignored)."""

from __future__ import annotations

import pytest
import torch

from nodegraph import run_graph
from nodegraph.nodes.flow_sd3 import block_list
from tests.graphs.tiny_pipelines import png_pixels, to_uint8

GRAPH = "graphs/sd3.yaml"
FULL = dict(prompt="a red fox in fresh snow", prompt_2="a cat on the table", prompt_3="lighthouse at dusk painting",
            negative_prompt="blurry low quality", steps=4, width=48, height=32, guidance_scale=5.0, batch_size=2,
            max_sequence_length=24, skip_guidance_layers="2", skip_layer_guidance_start=0.01,
            skip_layer_guidance_stop=0.6)  # skip-layer guidance on steps 1 and 2 of 0..3


@pytest.fixture(scope="module")
def pipe(tiny_sd3):
    from diffusers import StableDiffusion3Pipeline

    p = StableDiffusion3Pipeline.from_pretrained(tiny_sd3)
    p.set_progress_bar_config(disable=True)
    return p


def ours(folder, **inputs) -> torch.Tensor:
    return png_pixels(run_graph(GRAPH, inputs={"model": str(folder), **inputs}, device="cpu")["image"]).int()


def theirs(pipe, prompt, *, steps, width, height, seed=0, negative_prompt="", batch_size=1, prompt_2="",
           prompt_3="", skip_guidance_layers="", **kwargs) -> torch.Tensor:
    images = pipe(prompt, prompt_2=prompt_2 or None, prompt_3=prompt_3 or None,
                  negative_prompt=negative_prompt or None, height=height, width=width, num_inference_steps=steps,
                  num_images_per_prompt=batch_size, skip_guidance_layers=block_list(skip_guidance_layers) or None,
                  generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **kwargs).images
    return to_uint8(images).int()


@pytest.fixture(scope="module")
def full_image(tiny_sd3, pipe):
    got, expected = ours(tiny_sd3, **FULL), theirs(pipe, **FULL)
    return got, expected


def test_sd3_graph_matches_the_pipeline_with_every_setting(full_image):
    got, expected = full_image
    assert got.shape == expected.shape == (2, 32, 48, 3)
    assert (got - expected).abs().max() <= 1


def test_sd3_graph_matches_the_pipeline_without_guidance(tiny_sd3, pipe):
    """guidance_scale 1: no negative encoded, no CFG batch, skip-layer guidance inactive (it needs CFG)."""
    settings = dict(prompt="an astronaut riding a horse", steps=3, width=32, height=32, guidance_scale=1.0,
                    max_sequence_length=16, skip_guidance_layers="1", seed=3)
    got, expected = ours(tiny_sd3, **settings), theirs(pipe, **settings)
    assert (got - expected).abs().max() <= 1


@pytest.mark.parametrize("change", [
    {"prompt_2": "a dog on the moon"}, {"prompt_3": "a dog on the moon"}, {"negative_prompt": "ugly"},
    {"skip_guidance_layers": ""}, {"skip_layer_guidance_stop": 0.3}, {"max_sequence_length": 40},
    {"guidance_scale": 6.0}, {"seed": 1},
], ids=lambda c: next(iter(c)))
def test_each_setting_moves_the_image(tiny_sd3, full_image, change):
    got, _ = full_image
    moved = ours(tiny_sd3, **{**FULL, **change})
    assert (moved - got).abs().max() > 5, change


def test_a_pipeline_without_t5_matches_the_pipeline(tmp_path_factory):
    """text_encoder_3 null in model_index.json: T5's part of the conditioning is zeros (diffusers' rule)."""
    from diffusers import StableDiffusion3Pipeline

    from tests.sd3.tiny_sd3 import save_tiny_sd3

    folder = save_tiny_sd3(tmp_path_factory.mktemp("sd3_no_t5") / "tiny-sd3-no-t5", t5=False)
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    settings = dict(prompt="a red fox in fresh snow", negative_prompt="blurry", steps=2, width=32, height=32,
                    guidance_scale=4.0, max_sequence_length=20)
    got, expected = ours(folder, **settings), theirs(pipe, **settings)
    assert (got - expected).abs().max() <= 1


def test_sd3_graph_matches_the_pipeline_in_bf16(tiny_sd3):
    """bf16 end to end: noise drawn in bf16, the scheduler's float32 step cast back, CFG and skip-layer guidance
    in bf16 (measured 0/255)."""
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3, torch_dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    settings = {**FULL, "steps": 3}
    got = png_pixels(run_graph(GRAPH, inputs={"model": str(tiny_sd3), **settings}, device="cpu",
                               dtype="bf16")["image"]).int()
    assert (got - theirs(pipe, **settings)).abs().max() <= 1
