"""Latent previews use the model family's fixed latent→RGB map (ComfyUI's `latent_rgb_factors`)."""

import base64
import io
import pathlib

import torch
from PIL import Image

from nodegraph.serve.preview import latent_preview, preview_family
from nodegraph.spec.loader import load_graph

GRAPHS = pathlib.Path(__file__).parents[2] / "graphs"
# ComfyUI's factors (comfy/latent_formats.py, read from its source) written out here; SDXL's with its bias
COMFY = {"sd15": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
                   [-0.2120, -0.2616, -0.7177]], [0, 0, 0]),
         "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
                   [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011])}


def pixels(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def test_graphs_with_sdxl_nodes_get_the_sdxl_map_and_the_others_sd15s():
    family = {name: preview_family(load_graph(GRAPHS / f"{name}.yaml").checked)
              for name in ("sdxl", "sdxl_refiner", "sdxl_controlnet", "stable_diffusion", "img2img", "controlnet")}
    assert family == {"sdxl": "sdxl", "sdxl_refiner": "sdxl", "sdxl_controlnet": "sdxl",
                      "stable_diffusion": "sd15", "img2img": "sd15", "controlnet": "sd15"}


def test_each_family_maps_a_latent_pixel_by_its_own_factors():
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for family, (factors, bias) in COMFY.items():
        image = pixels(latent_preview(latents, family))
        assert image.size == (64, 64)  # 8×8 enlarged 8 times, pixel for pixel
        for y, x in [(0, 0), (3, 5), (7, 7)]:
            channels = latents[0, :, y, x].tolist()
            expected = tuple(round(min(1, max(0, (sum(c * f[r] for c, f in zip(channels, factors)) + bias[r] + 1) / 2))
                                   * 255) for r in range(3))
            got = image.getpixel((x * 8 + 4, y * 8 + 4))
            assert all(abs(a - b) <= 1 for a, b in zip(got, expected)), (family, (y, x), got, expected)
    assert pixels(latent_preview(latents, "sdxl")).tobytes() != pixels(latent_preview(latents, "sd15")).tobytes()
