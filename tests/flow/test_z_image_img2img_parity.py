"""graphs/z_image_img2img.yaml against diffusers' ZImageImg2ImgPipeline on the tiny random Z-Image folder, in the
same test: every pixel within 1/255 (fp32); strength and the init image move the result by more than 5/255."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nodegraph import run_graph
from tests.graphs.tiny_pipelines import png_pixels, to_uint8


@pytest.fixture(scope="module")
def init_image(tmp_path_factory):
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([x * 5, y * 7, (x + y) * 3 % 256], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("init") / "init.png"
    Image.fromarray(rgb).save(path)
    return path


def ours(folder, image, **inputs) -> torch.Tensor:
    outputs = run_graph("graphs/z_image_img2img.yaml", inputs={"model": str(folder), "image": str(image), **inputs})
    return png_pixels(outputs["image"]).int()


def test_img2img_with_guidance_matches_and_strength_and_image_move_it(tiny_z_image, init_image, tmp_path):
    from diffusers import ZImageImg2ImgPipeline

    pipe = ZImageImg2ImgPipeline.from_pretrained(tiny_z_image)
    pipe.set_progress_bar_config(disable=True)
    # 4 steps at strength 0.6: diffusers keeps steps int(4 - 2.4) = 1 onwards, so 3 transformer calls
    settings = dict(prompt="a watercolor landscape", negative_prompt="blurry", guidance_scale=2.5, steps=4,
                    strength=0.6, seed=3)
    expected = to_uint8(pipe(settings["prompt"], image=Image.open(init_image), strength=0.6, num_inference_steps=4,
                             guidance_scale=2.5, negative_prompt="blurry", output_type="np",
                             generator=torch.Generator("cpu").manual_seed(3)).images).int()
    got = ours(tiny_z_image, init_image, **settings)
    assert got.shape == expected.shape == (1, 32, 48, 3)
    assert (got - expected).abs().max() <= 1
    assert (got - ours(tiny_z_image, init_image, **{**settings, "strength": 0.9})).abs().max() > 5
    flipped = tmp_path / "flipped.png"
    Image.open(init_image).transpose(Image.FLIP_TOP_BOTTOM).save(flipped)
    assert (got - ours(tiny_z_image, flipped, **settings)).abs().max() > 5
