"""The Z-Image graphs' latent previews map 16-channel Flux-VAE latents by ComfyUI's Flux factors and bias."""

import base64
import io
import pathlib

import torch
from PIL import Image

from nodegraph.serve.preview import latent_preview, preview_family
from nodegraph.spec.loader import load_graph

GRAPHS = pathlib.Path(__file__).parents[2] / "graphs"
# ComfyUI's Flux latent format (comfy/latent_formats.py, read from its source), written out here
FLUX = [[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433], [-0.0174, 0.0160, 0.0617],
        [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115], [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259],
        [-0.0245, 0.0250, 0.1180], [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
        [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499], [-0.1262, -0.0982, -0.0778]]
FLUX_BIAS = [-0.0329, -0.0718, -0.0851]


def test_z_image_graphs_get_the_flux_map():
    assert preview_family(load_graph(GRAPHS / "z_image.yaml").checked) == "flux"
    assert preview_family(load_graph(GRAPHS / "stable_diffusion.yaml").checked) == "sd15"


def test_a_16_channel_latent_pixel_is_mapped_by_the_flux_factors():
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    image = Image.open(io.BytesIO(base64.b64decode(latent_preview(latents, "flux").split(",", 1)[1]))).convert("RGB")
    for y, x in [(0, 0), (2, 6), (7, 7)]:
        channels = latents[0, :, y, x].tolist()
        expected = [round(min(1, max(0, (sum(c * f[r] for c, f in zip(channels, FLUX)) + FLUX_BIAS[r] + 1) / 2)) * 255)
                    for r in range(3)]
        got = image.getpixel((x * 8 + 4, y * 8 + 4))
        assert all(abs(a - b) <= 1 for a, b in zip(got, expected)), ((y, x), got, expected)
