"""Image prompts for SDXL ("Revision", ComfyUI's CLIPVisionLoader + CLIPVisionEncode + unCLIPConditioning):
a CLIP-vision tower's image embedding replaces the prompt's pooled vector (docs/revision.md).

LoadCLIPVision reads the tower (nodegraph/models/clip_vision.py), CLIPVisionEncode embeds images with ComfyUI's
preprocessing, ComfyUnCLIPConditioning collects (embedding, strength, noise augmentation) entries like ComfyUI's
unCLIPConditioning, and ComfyUnCLIPPooled turns them into the pooled vector for the sampler's seed
(nodegraph/comfy/unclip.py), ready for the `positive_pooled` of a ComfyUI step or SDXL's `pooled` inputs.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, FilePath, Image

_PICKLE_HINT = "run with `--set allow_pickle=true` (a graph: `allow_pickle: true`) if you trust it, or convert it " \
               "to .safetensors"


@node("LoadCLIPVision", version=1)
class LoadCLIPVision(Node):
    """A CLIP-vision tower (ComfyUI's models/clip_vision/, e.g. clip_vision_g.safetensors) from a .safetensors
    file in transformers' or OpenCLIP's layout, or from a .pth/.bin pickle only with `allow_pickle`."""

    class Inputs(Ports):
        model: FilePath = Field(min_length=1, description="path of the CLIP-vision weights (.safetensors)")
        allow_pickle: bool = False

    class Outputs(Ports):
        clip_vision: Any

    def run(self, i, ctx):
        import torch

        from nodegraph.models.clip_vision import VisionFileError, load_clip_vision
        from nodegraph.models.errors import CheckpointError
        from nodegraph.models.weight_files import PICKLES
        from nodegraph.spec.limits import InputRefused
        from nodegraph.spec.reading import open_regular

        name = os.path.basename(i.model)
        try:
            if os.path.splitext(i.model)[1].lower() in PICKLES:
                if not i.allow_pickle:
                    raise ValueError(f"`model`: {name} is a pickle, which can run code when loaded; {_PICKLE_HINT}")
                with open_regular(i.model, name) as f:  # a FIFO or device is refused, never opened to block
                    state = torch.load(f, map_location="cpu", weights_only=True)
            else:
                state = _read_safetensors(i.model, name)
            model = load_clip_vision(state, name)
        except (CheckpointError, InputRefused, VisionFileError) as exc:
            raise ValueError(f"`model`: {exc}") from None
        return {"clip_vision": model.to(device=ctx.device)}


def _read_safetensors(path: str, name: str) -> dict:
    """The file's tensors, read only once its header (checked reader: a regular file, sizes within spec/limits.py)
    describes a CLIP-vision tower whose every key and shape it holds (models/clip_vision.py check_clip_vision)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nodegraph.models.clip_vision import check_clip_vision, header_state
    from nodegraph.models.weight_files import read_safetensors_header

    check_clip_vision(header_state(read_safetensors_header(path, name).tensors, name), name)
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"`model`: {name} cannot be read as safetensors ({exc})") from None


@node("CLIPVisionEncode", version=1)
class CLIPVisionEncode(Node):
    """Images (B, 3, H, W) in [0, 1] → the tower's image embeddings (B, D), with ComfyUI's preprocessing:
    `center` scales the short side to the tower's size (bicubic, antialiased) and keeps the centre square,
    `none` squashes the whole image to that square; then 8-bit levels and CLIP's mean/std."""

    class Inputs(Ports):
        clip_vision: Any
        image: Image
        crop: Literal["center", "none"] = "center"

    class Outputs(Ports):
        image_embeds: Embeddings

    def run(self, i, ctx):
        from nodegraph.models.clip_vision import encode_image

        return {"image_embeds": encode_image(i.clip_vision, i.image, crop=i.crop == "center")}


@node("ComfyUnCLIPConditioning", version=1)
class ComfyUnCLIPConditioning(Node):
    """ComfyUI's unCLIPConditioning: `unclip` (a prompt's earlier entries, or none) plus this image embedding with
    its strength and noise augmentation; strength 0 adds nothing, as in ComfyUI."""

    class Inputs(Ports):
        image_embeds: Embeddings
        unclip: Optional[list] = Field(None, description="entries of earlier unCLIPConditioning nodes")
        strength: float = Field(1.0, ge=-10.0, le=10.0)
        noise_augmentation: float = Field(0.0, ge=0.0, le=1.0)

    class Outputs(Ports):
        unclip: list

    def run(self, i, ctx):
        entries = list(i.unclip or [])
        if i.strength != 0:
            entries.append({"image_embeds": i.image_embeds, "strength": i.strength,
                            "noise_augmentation": i.noise_augmentation})
        return {"unclip": entries}


@node("ComfyUnCLIPPooled", version=1)
class ComfyUnCLIPPooled(Node):
    """The pooled vector ComfyUI's SDXL samples a prompt with when it carries unCLIP entries: each embedding
    noise-augmented with the sampler's `seed` − 10, weighted by strength and summed (nodegraph/comfy/unclip.py);
    `pooled` (the text's) is passed through when there are no entries."""

    class Inputs(Ports):
        unclip: list
        seed: int = Field(0, ge=0, le=2**64 - 1, description="the KSampler's seed")
        pooled: Optional[Embeddings] = Field(None, description="the prompt's own pooled vector")

    class Outputs(Ports):
        pooled: Optional[Embeddings]

    def run(self, i, ctx):
        if not i.unclip:
            return {"pooled": i.pooled}
        from nodegraph.comfy.unclip import unclip_pooled

        pooled = unclip_pooled(i.unclip, i.seed)
        return {"pooled": pooled.to(device=ctx.device)}
