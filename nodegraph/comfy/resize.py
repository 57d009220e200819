"""ComfyUI's resize rule for images and latents (comfy/utils.py `common_upscale`, `lanczos`) and the sizes its
ImageScale / ImageScaleToTotalPixels / LatentUpscaleBy nodes ask for (nodes.py, comfy_extras/nodes_post_processing.py).

* `crop: center` first cuts the input to the new aspect ratio around the centre (whole pixels, rounded);
* "nearest-exact", "bilinear", "area", "bicubic": torch's `interpolate` of that mode (align_corners and antialias
  off); "lanczos": each image through 8-bit PIL and back (clipped to [0, 1], ×255, truncated to uint8, PIL's
  LANCZOS, ÷255).
"""

from __future__ import annotations

import math

IMAGE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")


def common_upscale(x, width: int, height: int, method: str, crop: str = "disabled"):
    """(B, C, h, w) → (B, C, height, width) by ComfyUI's rule."""
    import torch.nn.functional as F

    if crop == "center":
        old_w, old_h = x.shape[-1], x.shape[-2]
        old_aspect, new_aspect = old_w / old_h, width / height
        dx = round((old_w - old_w * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 0
        dy = round((old_h - old_h * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 0
        x = x.narrow(-2, dy, old_h - 2 * dy).narrow(-1, dx, old_w - 2 * dx)
    if method == "lanczos":
        return _lanczos(x, width, height)
    return F.interpolate(x, size=(height, width), mode=method)


def _lanczos(x, width: int, height: int):
    import numpy as np
    import torch
    from PIL import Image

    out = []
    for image in x:  # (C, h, w)
        pixels = (255.0 * image.movedim(0, -1).float().cpu().numpy()).clip(0, 255).astype(np.uint8)
        resized = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).resize(
            (width, height), resample=Image.Resampling.LANCZOS)
        array = np.array(resized).astype(np.float32) / 255.0
        out.append(torch.from_numpy(array.reshape(height, width, -1)).movedim(-1, 0))
    return torch.stack(out).to(device=x.device, dtype=x.dtype)


def scale_size(width: int, height: int, to_width: int, to_height: int) -> tuple[int, int]:
    """ImageScale's size: a 0 side keeps the aspect ratio from the other (at least 1); both 0: unchanged."""
    if to_width == 0 and to_height == 0:
        return width, height
    if to_width == 0:
        to_width = max(1, round(width * to_height / height))
    elif to_height == 0:
        to_height = max(1, round(height * to_width / width))
    return to_width, to_height


def total_pixels_size(width: int, height: int, megapixels: float, steps: int = 1) -> tuple[int, int]:
    """ImageScaleToTotalPixels' size: the aspect ratio kept, about `megapixels`·1024² pixels, each side rounded to
    a multiple of `steps`."""
    scale = math.sqrt(megapixels * 1024 * 1024 / (width * height))
    return round(width * scale / steps) * steps, round(height * scale / steps) * steps
