"""graphs/sd3.yaml's latent previews map 16-channel SD3-VAE latents by ComfyUI's SD3 factors and bias."""

import base64
import io
import pathlib

import torch
from PIL import Image

from nodegraph.serve.preview import latent_preview, preview_family
from nodegraph.spec.loader import load_graph

GRAPHS = pathlib.Path(__file__).parents[2] / "graphs"
# ComfyUI's SD3 latent format (comfy/latent_formats.py, read from its source), written out here
SD3 = [[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458], [0.0856, 0.0339, 0.0902],
       [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309], [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358],
       [-0.0194, 0.0020, 0.0669], [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
       [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293], [-0.1448, -0.1463, -0.1189]]
SD3_BIAS = [0.2394, 0.2135, 0.1925]


def test_the_sd3_graphs_get_the_sd3_map():
    assert preview_family(load_graph(GRAPHS / "sd3.yaml").checked) == "sd3"
    assert preview_family(load_graph(GRAPHS / "sd3_denoise_step.yaml").checked) == "sd3"


def test_a_16_channel_latent_pixel_is_mapped_by_the_sd3_factors():
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    image = Image.open(io.BytesIO(base64.b64decode(latent_preview(latents, "sd3").split(",", 1)[1]))).convert("RGB")
    for y, x in [(0, 0), (3, 5), (7, 7)]:
        channels = latents[0, :, y, x].tolist()
        expected = [round(min(1, max(0, (sum(c * f[r] for c, f in zip(channels, SD3)) + SD3_BIAS[r] + 1) / 2)) * 255)
                    for r in range(3)]
        got = image.getpixel((x * 8 + 4, y * 8 + 4))
        assert all(abs(a - b) <= 1 for a, b in zip(got, expected)), ((y, x), got, expected)
