"""graphs/flux_img2img.yaml against diffusers' FluxImg2ImgPipeline on the tiny random Flux folders, in the same
test: every pixel within 1/255 (fp32), the init image resized to width × height as the pipeline does; strength,
the init image and guidance move the result by more than 5/255."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nodegraph import run_graph
from tests.graphs.tiny_pipelines import png_pixels, to_uint8

GRAPH = "graphs/flux_img2img.yaml"


@pytest.fixture(scope="module")
def init_image(tmp_path_factory):
    y, x = np.mgrid[0:40, 0:56]  # resized by the pipeline (and the graph) to the requested 48 × 32
    rgb = np.stack([x * 4, y * 6, (x + y) * 3 % 256], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("init") / "init.png"
    Image.fromarray(rgb).save(path)
    return path


def ours(folder, image, **inputs) -> torch.Tensor:
    outputs = run_graph(GRAPH, inputs={"model": str(folder), "image": str(image), **inputs})
    return png_pixels(outputs["image"]).int()


def theirs(folder, image, *, prompt, steps, strength, seed, guidance=3.5, width, height, batch_size=1,
           max_sequence_length=512):
    from diffusers import FluxImg2ImgPipeline

    pipe = FluxImg2ImgPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(prompt, image=Image.open(image), strength=strength, num_inference_steps=steps, width=width,
                  height=height, guidance_scale=guidance, num_images_per_prompt=batch_size,
                  max_sequence_length=max_sequence_length, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(seed)).images
    return to_uint8(images).int()


def test_dev_img2img_on_a_batch_matches_and_strength_image_and_guidance_move_it(tiny_flux_dev, init_image, tmp_path):
    # 4 steps at strength 0.6: diffusers keeps steps int(4 - 2.4) = 1 onwards, so 3 transformer calls
    settings = dict(prompt="a watercolor painting of a red fox", steps=4, strength=0.6, seed=3, width=48, height=32,
                    batch_size=2, max_sequence_length=24)
    expected = theirs(tiny_flux_dev, init_image, **settings)
    got = ours(tiny_flux_dev, init_image, **settings)
    assert got.shape == expected.shape == (2, 32, 48, 3)
    assert (got - expected).abs().max() <= 1
    assert (got - ours(tiny_flux_dev, init_image, **{**settings, "strength": 0.9})).abs().max() > 5
    assert (got - ours(tiny_flux_dev, init_image, **{**settings, "guidance": 1.0})).abs().max() > 5
    flipped = tmp_path / "flipped.png"
    Image.open(init_image).transpose(Image.FLIP_TOP_BOTTOM).save(flipped)
    assert (got - ours(tiny_flux_dev, flipped, **settings)).abs().max() > 5


def test_schnell_img2img_with_its_defaults_matches(tiny_flux_schnell, init_image):
    settings = dict(prompt="a lighthouse at dusk", strength=0.8, seed=5, width=32, height=32)
    expected = theirs(tiny_flux_schnell, init_image, **settings, steps=4, max_sequence_length=256)
    got = ours(tiny_flux_schnell, init_image, **settings)  # steps 0 and max_sequence_length 0: schnell's 4, 256
    assert got.shape == expected.shape == (1, 32, 32, 3)
    assert (got - expected).abs().max() <= 1
