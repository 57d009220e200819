"""A small preview image of the current latents, sent with progress events (no VAE call per step).

Four-channel latents are mapped to RGB by a fixed 4×3 matrix per model family, ComfyUI's
`latent_rgb_factors` (comfy/latent_formats.py): SD 1.5's for the Stable Diffusion 1.x/2.x family and
`builtin:digits`, SDXL's (with its bias) for graphs using SDXL nodes (`preview_family`). Sixteen-channel latents
of the Flux VAE (Z-Image and Flux graphs) use ComfyUI's 16×3 Flux map with its bias, those of SD3's VAE (graphs with
SD3 nodes) ComfyUI's SD3 map and bias; other latents show
their first three channels (or one, as grey), each stretched to [0, 1]. It is a hint of composition and
colour, not the image.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Optional

SD15_LATENT_RGB = [[0.3512, 0.2297, 0.3227],
                   [0.3250, 0.4974, 0.2350],
                   [-0.2829, 0.1762, 0.2721],
                   [-0.2120, -0.2616, -0.7177]]
SDXL_LATENT_RGB = [[0.3651, 0.4232, 0.4341],
                   [-0.2533, -0.0042, 0.1068],
                   [0.1076, 0.1111, -0.0362],
                   [-0.3165, -0.2492, -0.2188]]
SDXL_LATENT_RGB_BIAS = [0.1084, -0.0175, -0.0011]
FLUX_LATENT_RGB = [[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433],
                   [-0.0174, 0.0160, 0.0617], [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115],
                   [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259], [-0.0245, 0.0250, 0.1180],
                   [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
                   [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499],
                   [-0.1262, -0.0982, -0.0778]]
FLUX_LATENT_RGB_BIAS = [-0.0329, -0.0718, -0.0851]
SD3_LATENT_RGB = [[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458],
                  [0.0856, 0.0339, 0.0902], [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309],
                  [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358], [-0.0194, 0.0020, 0.0669],
                  [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
                  [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293],
                  [-0.1448, -0.1463, -0.1189]]
SD3_LATENT_RGB_BIAS = [0.2394, 0.2135, 0.1925]
FAMILIES = {"sd15": (SD15_LATENT_RGB, [0.0, 0.0, 0.0]), "sdxl": (SDXL_LATENT_RGB, SDXL_LATENT_RGB_BIAS),
            "flux": (FLUX_LATENT_RGB, FLUX_LATENT_RGB_BIAS), "sd3": (SD3_LATENT_RGB, SD3_LATENT_RGB_BIAS)}
MIN_SIDE = 64  # tiny latents (8×8 for digits) are enlarged, pixel for pixel, to at least this


def preview_family(checked) -> str:
    """`sdxl` when the graph (its repeat bodies and included graphs too) uses an SDXL node, `flux` (the 16-channel
    Flux VAE's latents) when it uses a Z-Image or Flux node, `sd3` when it uses an SD3 node, else `sd15`."""
    stack = [checked.nodes]
    while stack:
        for node in stack.pop().values():
            if "SDXL" in node.label:
                return "sdxl"
            if "ZImage" in node.label or "Flux" in node.label:
                return "flux"
            if "SD3" in node.label:  # SD3's own 16-channel VAE
                return "sd3"
            if node.body is not None:
                stack.append(node.body.nodes)
            if node.subgraph is not None:
                stack.append(node.subgraph.nodes)
    return "sd15"


def latent_preview(latents: Any, family: str = "sd15") -> Optional[str]:
    """A `data:image/png;base64,...` URL for the first latent of a (B, C, h, w) tensor; None for anything else."""
    dim = getattr(latents, "dim", None)
    if not callable(dim) or dim() != 4:
        return None
    import torch
    from PIL import Image

    x = latents[0].detach().float().cpu()  # (C, h, w)
    factors, bias = FAMILIES[family]
    if x.shape[0] == len(factors):
        rgb = torch.einsum("chw,cr->rhw", x, torch.tensor(factors)) + torch.tensor(bias)[:, None, None]
        rgb = ((rgb + 1) / 2).clamp(0, 1)
    else:
        rgb = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
        low = rgb.amin(dim=(1, 2), keepdim=True)
        high = rgb.amax(dim=(1, 2), keepdim=True)
        rgb = (rgb - low) / (high - low).clamp_min(1e-6)
    pixels = (rgb.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (h, w, 3)
    image = Image.fromarray(pixels)
    scale = max(1, -(-MIN_SIDE // max(1, min(image.size))))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
