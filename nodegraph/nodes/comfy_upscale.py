"""ComfyUI's model upscaling: UpscaleModelLoader (ESRGAN / Real-ESRGAN RRDBNet files, nodegraph/models/esrgan.py)
and ImageUpscaleWithModel (512-pixel tiles overlapping by 32, feathered, then clamped to [0, 1]: comfy_extras/
nodes_upscale_model.py and comfy/utils.py `tiled_scale`)."""

from __future__ import annotations

from typing import Any

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import FilePath, Image

PICKLE_HINT = "run with `--set allow_pickle=true` (a graph: `allow_pickle: true`) if you trust it, or convert it to " \
              ".safetensors"


@node("LoadUpscaleModel", version=1)
class LoadUpscaleModel(Node):
    """An ESRGAN-family image upscaler (RRDBNet: ESRGAN, Real-ESRGAN ×4/×2/×1) from a .safetensors file, or from a
    .pth/.pt pickle only with `allow_pickle` (read with torch.load(weights_only=True)), as checkpoints are."""

    class Inputs(Ports):
        model: FilePath = Field(description="path of the upscaler's weights (.safetensors, or .pth with allow_pickle)")
        allow_pickle: bool = False

    class Outputs(Ports):
        upscale_model: Any

    def run(self, i, ctx):
        import os

        import torch

        from nodegraph.models.esrgan import load_rrdbnet
        from nodegraph.models.weight_files import PICKLES

        if os.path.splitext(i.model)[1].lower() in PICKLES:
            if not i.allow_pickle:
                raise ValueError(f"`model`: {os.path.basename(i.model)} is a pickle, which can run code when loaded; "
                                 f"{PICKLE_HINT}")
            state = torch.load(i.model, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            state = load_file(i.model)
        try:
            model = load_rrdbnet(state)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ValueError(f"`model`: {os.path.basename(i.model)} is not an ESRGAN/Real-ESRGAN (RRDBNet) upscaler "
                             f"nodegraph reads ({str(exc).splitlines()[0]})") from None
        return {"upscale_model": model.to(device=ctx.device)}


@node("ComfyImageUpscaleWithModel", version=1)
class ComfyImageUpscaleWithModel(Node):
    """Upscale images with an upscale model as ComfyUI does: images of at most `tile` pixels a side in one pass,
    larger ones in tiles overlapping by `overlap` whose outputs are blended with linear ramps; clamped to [0, 1]."""

    class Inputs(Ports):
        upscale_model: Any
        image: Image
        tile: int = Field(512, ge=64, le=4096)
        overlap: int = Field(32, ge=0, le=512)

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        import torch

        model = i.upscale_model
        x = i.image.to(device=next(model.parameters()).device, dtype=torch.float32)  # (B, 3, H, W)
        with torch.no_grad():
            out = tiled_scale(x, model, i.tile, i.overlap, model.scale)
        return {"image": out.clamp(0, 1).to(device=ctx.device, dtype=i.image.dtype)}


def tiled_scale(x, function, tile: int, overlap: int, scale: int):
    """(B, C, H, W) → (B, C, scale·H, scale·W): ComfyUI's `tiled_scale_multidim` for two dimensions."""
    import itertools

    import torch

    out = torch.empty((x.shape[0], 3, x.shape[2] * scale, x.shape[3] * scale), device=x.device)
    for b in range(x.shape[0]):
        s = x[b:b + 1]
        if s.shape[2] <= tile and s.shape[3] <= tile:
            out[b:b + 1] = function(s)
            continue
        acc, weight = torch.zeros_like(out[b:b + 1]), torch.zeros_like(out[b:b + 1])
        positions = [range(0, size - overlap, tile - overlap) if size > tile else [0] for size in s.shape[2:]]
        for top, left in itertools.product(*positions):
            y = max(0, min(s.shape[2] - overlap, top))
            x0 = max(0, min(s.shape[3] - overlap, left))
            piece = function(s[..., y:y + min(tile, s.shape[2] - y), x0:x0 + min(tile, s.shape[3] - x0)])
            mask = torch.ones_like(piece)
            feather = overlap * scale
            for axis in (2, 3):
                if feather >= mask.shape[axis]:
                    continue
                for t in range(feather):
                    mask.narrow(axis, t, 1).mul_((t + 1) / feather)
                    mask.narrow(axis, mask.shape[axis] - 1 - t, 1).mul_((t + 1) / feather)
            region = (..., slice(y * scale, y * scale + piece.shape[2]), slice(x0 * scale, x0 * scale + piece.shape[3]))
            acc[region] += piece * mask
            weight[region] += mask
        out[b:b + 1] = acc / weight
    return out
