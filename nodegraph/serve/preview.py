"""A small preview image of the current latents, sent with progress events (no VAE call per step).

Four-channel latents (the Stable Diffusion 1.x/2.x family and `builtin:digits`) are mapped to RGB by the fixed
4×3 matrix ComfyUI uses for SD 1.5 (`latent_rgb_factors` in comfy/latent_formats.py); other latents show
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
                   [-0.2120, -0.2616, -0.6444]]
MIN_SIDE = 64  # tiny latents (8×8 for digits) are enlarged, pixel for pixel, to at least this


def latent_preview(latents: Any) -> Optional[str]:
    """A `data:image/png;base64,...` URL for the first latent of a (B, C, h, w) tensor; None for anything else."""
    dim = getattr(latents, "dim", None)
    if not callable(dim) or dim() != 4:
        return None
    import torch
    from PIL import Image

    x = latents[0].detach().float().cpu()  # (C, h, w)
    if x.shape[0] == 4:
        rgb = torch.einsum("chw,cr->rhw", x, torch.tensor(SD15_LATENT_RGB))
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
