"""GLIGEN text boxes (Li et al., 2023): phrases placed in boxes, read by a GLIGEN model's fusers inside the UNet
(nodegraph/models/gligen.py; docs/gligen.md).

Two ways to use one: `GLIGENUNet` grounds a UNet as diffusers' StableDiffusionGLIGENPipeline does, for any step
graph (graphs/sd_denoise_step.yaml); `ComfyGLIGENTextBox` adds a box to a ComfyUI conditioning list, sampled by
ComfyDenoise as ComfyUI samples GLIGENTextBoxApply (nodegraph/comfy/gligen.py).
"""

from __future__ import annotations

from typing import Any

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import FilePath, TextEncoder, Tokenizer, UNet


@node("LoadGLIGEN", version=1)
class LoadGLIGEN(Node):
    """A GLIGEN text-box model from a .safetensors file in ComfyUI's layout (its gligen/ folder, e.g.
    gligen_sd14_textbox_pruned.safetensors): the position net and one gated self-attention per transformer block."""

    class Inputs(Ports):
        model: FilePath = Field(description="path of the GLIGEN .safetensors file")

    class Outputs(Ports):
        gligen: Any

    def run(self, i, ctx):
        import os

        from nodegraph.models.gligen import GLIGENError, read_gligen

        if not os.path.exists(i.model):
            raise GLIGENError(f"`model`: no such file {i.model!r}; give the path of a GLIGEN .safetensors file")
        key = ("gligen", os.path.realpath(i.model), os.path.getmtime(i.model), str(ctx.device), str(ctx.dtype))
        return {"gligen": ctx.components.get_or_load(key, lambda: read_gligen(i.model).to_run(ctx.device, ctx.dtype))}


@node("GLIGENUNet", version=1)
class GLIGENUNet(Node):
    """The UNet grounded by `phrases` in `boxes` as diffusers' GLIGEN pipeline does at every step
    (gligen_scheduled_sampling_beta 1): each phrase's pooled CLIP embedding and its box (x1, y1, x2, y2, fractions of
    the image, top-left origin) become grounding tokens (at most 30). With `guidance_scale` > 1 the UNet is called
    with [negative; positive] batches (CFGEmbeddings) and the negative half gets null tokens, as in diffusers;
    otherwise every sample is grounded. The loaded UNet is not changed."""

    class Inputs(Ports):
        unet: UNet
        gligen: Any
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        phrases: list[str] = Field(description="what each box holds, one phrase a box")
        boxes: list[list[float]] = Field(description="one [x1, y1, x2, y2] in [0, 1] a phrase")
        guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="the step graph's: > 1 means "
                                      "[negative; positive] batches")

    class Outputs(Ports):
        unet: UNet

    def run(self, i, ctx):
        import torch

        from nodegraph.models.gligen import MAX_OBJECTS, grounded_unet, pad_objects

        if len(i.phrases) > MAX_OBJECTS:  # before any phrase is encoded
            raise ValueError(f"`phrases`: {len(i.phrases)} phrases; GLIGEN reads at most {MAX_OBJECTS} boxes, drop "
                             f"some")
        if len(i.phrases) != len(i.boxes):
            raise ValueError(f"`boxes`: {len(i.boxes)} boxes for {len(i.phrases)} phrases; give one box a phrase")
        for k, box in enumerate(i.boxes):
            if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
                raise ValueError(f"`boxes`: box {k} {box} is not [x1, y1, x2, y2] inside the image with "
                                 f"0 ≤ x1 < x2 ≤ 1 and 0 ≤ y1 < y2 ≤ 1 (fractions of the width and height)")
        phrases = [_pooled(i.text_encoder, i.tokenizer, p) for p in i.phrases]
        boxes, masks, embeds = pad_objects([tuple(b) for b in i.boxes], phrases, i.gligen.phrase_dim)
        if i.guidance_scale > 1.0:  # the negative half: mask 0, the null features only
            boxes, masks, embeds = torch.cat([boxes, boxes]), torch.cat([torch.zeros_like(masks), masks]), \
                torch.cat([embeds, embeds])
        return {"unet": grounded_unet(i.unet, i.gligen, i.gligen.tokens(boxes, masks, embeds))}


@node("ComfyGLIGENTextBox", version=1)
class ComfyGLIGENTextBox(Node):
    """ComfyUI's GLIGENTextBoxApply: `text` (encoded by the CLIP, pooled) grounded in the box (x, y, width, height),
    in pixels (÷ 8 to latent cells), added to every entry of a conditioning list (ComfyConditioning…); sampled by
    ComfyDenoise's `positive_list` on every step, for that prompt only."""

    class Inputs(Ports):
        conditioning: Any
        gligen: Any
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text: str = ""
        width: int = Field(64, ge=8, le=16384)
        height: int = Field(64, ge=8, le=16384)
        x: int = Field(0, ge=0, le=16384)
        y: int = Field(0, ge=0, le=16384)

    class Outputs(Ports):
        conditioning: Any

    def run(self, i, ctx):
        from nodegraph.comfy.gligen import box_entry, pooled_text
        from nodegraph.models.gligen import MAX_OBJECTS

        entries = _entries(i.conditioning)
        for e in entries:
            before = (e.get("gligen") or {}).get("boxes", [])
            if before and e["gligen"]["model"] is not i.gligen:
                raise ValueError("`gligen`: this prompt already has boxes of another GLIGEN model; use one")
            if len(before) >= MAX_OBJECTS:
                raise ValueError(f"`conditioning`: the prompt already has {MAX_OBJECTS} GLIGEN boxes, the most "
                                 f"GLIGEN reads; drop some GLIGENTextBoxApply nodes")
        box = box_entry(pooled_text(i.text_encoder, i.tokenizer, i.text), i.width, i.height, i.x, i.y)
        return {"conditioning": [dict(e, gligen={"model": i.gligen, "boxes": [*(e.get("gligen") or {}).get(
            "boxes", []), box]}) for e in entries]}


def _pooled(text_encoder, tokenizer, phrase: str):
    """diffusers' GLIGEN phrase embedding: the CLIP text model's pooler_output (P,)."""
    import torch

    ids = tokenizer([phrase], padding="max_length", max_length=77, truncation=True).input_ids
    with torch.no_grad():
        return text_encoder(torch.tensor(ids, device=text_encoder.device)).pooler_output[0].float().cpu()


def _entries(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(e, dict) and "embeddings" in e for e in value):
        raise ValueError("`conditioning`: expected a conditioning list (from ComfyConditioning, "
                         "ComfyConditioningSetArea or ComfyConditioningCombine)")
    return value
