"""Image nodes: reading an image file, and pixel-space samples ([-1, 1]) to images ([0, 1])."""

from __future__ import annotations

from typing import Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import FilePath, Image, Latent


def read_image(path: str, port: str):
    """The image file at `path`, decoded (in its own mode); ValueError naming
    the `port` when it is missing, not an image or over `max_image_pixels` (checked before decoding)."""
    import PIL.Image

    from nodegraph.spec.limits import InputRefused
    from nodegraph.spec.reading import open_image

    try:
        with open_image(path, repr(path)) as img:
            img.load()
            return img
    except InputRefused as exc:
        if exc.code == "file_not_found":
            raise ValueError(f"`{port}`: no image file at {path!r}") from None
        raise ValueError(f"`{port}`: {exc}") from None
    except (OSError, SyntaxError, PIL.Image.DecompressionBombError) as exc:
        raise ValueError(f"`{port}`: {path!r} cannot be read as an image ({type(exc).__name__})") from None


@node("LoadImage", version=1)
class LoadImage(Node):
    """Read an image file as RGB in [0, 1], shape (1, 3, H, W).

    The size is rounded down to a multiple of `multiple_of` (Lanczos resize, as diffusers' image processor
    does for a VAE's scale factor); `width`/`height` resize it first.
    """

    pure = False  # the file may change between runs: never served from a node cache (exec/cache.py)

    class Inputs(Ports):
        path: FilePath = Field(min_length=1, description="image file (PNG, JPEG, WebP, …)")
        width: Optional[int] = Field(None, gt=0, le=8192)
        height: Optional[int] = Field(None, gt=0, le=8192)
        multiple_of: int = Field(8, ge=1, le=64)

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        import numpy as np
        import PIL.Image
        import torch

        img = read_image(i.path, "path")
        img = img.convert("RGB")
        width, height = i.width or img.width, i.height or img.height
        width, height = width - width % i.multiple_of, height - height % i.multiple_of
        if width == 0 or height == 0:
            raise ValueError(f"`path`: image {i.path!r} is smaller than {i.multiple_of} pixels on a side")
        if (width, height) != img.size:
            img = img.resize((width, height), resample=PIL.Image.LANCZOS)
        pixels = np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3)
        return {"image": torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()}


@node("SampleToImage", version=1)
class SampleToImage(Node):
    """Turn pixel-space samples in [-1, 1] (a DDPM's output) into images in [0, 1] on the CPU."""

    class Inputs(Ports):
        sample: Latent

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        return {"image": (i.sample / 2 + 0.5).clamp(0, 1).float().cpu()}
