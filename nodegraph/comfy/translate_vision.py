"""ComfyUI's CLIP-vision classes (CLIPVisionLoader, CLIPVisionEncode, unCLIPConditioning: SDXL "Revision") →
nodegraph nodes (nodegraph/nodes/clip_vision.py): a mixin of translate.py's translator.

A CONDITIONING that went through unCLIPConditioning carries `unclip` (the ComfyUnCLIPConditioning node's entries);
the KSampler that samples it swaps the prompt's pooled vector for ComfyUnCLIPPooled's, which needs the sampler's
seed (`with_unclip`), as ComfyUI builds it when sampling (nodegraph/comfy/unclip.py).
"""

from __future__ import annotations

from nodegraph.comfy.classes import comfy_class
from nodegraph.comfy.errors import ComfyError
from nodegraph.comfy.translate_control import node_suffix


class VisionTranslations:
    @comfy_class("CLIPVisionLoader", widgets=("clip_name",), literals={"clip_name": str}, outputs=("CLIP_VISION",),
                 short="clip_vision", models={"clip_name": "clip_vision"})
    def _CLIPVisionLoader(self, node_id, nid):
        self.nodes[nid] = {"type": "LoadCLIPVision", "model": self.literal(node_id, "clip_name"),
                           "allow_pickle": self.allow_pickle()}
        return (f"${nid}.clip_vision",)

    @comfy_class("CLIPVisionEncode", widgets=("crop",), literals={"crop": str}, outputs=("CLIP_VISION_OUTPUT",),
                 links=("clip_vision", "image"), short="vision")
    def _CLIPVisionEncode(self, node_id, nid):
        self.nodes[nid] = {"type": "CLIPVisionEncode", "clip_vision": self.link(node_id, "clip_vision", "CLIP_VISION"),
                           "image": self.link(node_id, "image", "IMAGE"), "crop": self._vision_crop(node_id)}
        return (f"${nid}.image_embeds",)

    def _vision_crop(self, node_id) -> str:
        """The graph input for `crop` (center / none: not the image nodes' `crop` choices, so not `literal`)."""
        value = self.api[node_id]["inputs"].get("crop", "center")
        if isinstance(value, list):
            raise ComfyError(f"{self.where(node_id, 'crop')} is linked to node {value[0]}; nodegraph takes a literal "
                             f"value here (convert the input back to a widget)")
        if value not in ("center", "none"):
            raise ComfyError(f"{self.where(node_id, 'crop')}: {value!r} is not one of center, none")
        name = "crop" if "crop" in self.unique else f"crop_{node_suffix(node_id)}"
        self.inputs[name] = {"type": "str", "default": value, "choices": ["center", "none"],
                             "description": f"ComfyUI node {node_id} (CLIPVisionEncode) `crop`."}
        return f"$inputs.{name}"

    @comfy_class("unCLIPConditioning", widgets=("strength", "noise_augmentation"),
                 literals={"strength": float, "noise_augmentation": float}, outputs=("CONDITIONING",),
                 links=("conditioning", "clip_vision_output"), short="unclip")
    def _unCLIPConditioning(self, node_id, nid):
        cond = self.link(node_id, "conditioning", "CONDITIONING")
        if cond.get("list"):
            raise ComfyError(f"{self.where(node_id, 'conditioning')}: unCLIP conditioning of area-conditioned "
                             f"prompts is not covered yet")
        self.nodes[nid] = {"type": "ComfyUnCLIPConditioning",
                           "image_embeds": self.link(node_id, "clip_vision_output", "CLIP_VISION_OUTPUT"),
                           "strength": self.literal(node_id, "strength", 1.0),
                           "noise_augmentation": self.literal(node_id, "noise_augmentation", 0.0)}
        if cond.get("unclip"):
            self.nodes[nid]["unclip"] = cond["unclip"]
        return (dict(cond, unclip=f"${nid}.unclip"),)

    def with_unclip(self, nid: str, seed, *conds: dict) -> tuple:
        """The sampler's prompts, each with its pooled vector built from its unCLIP entries for the sampler's
        `seed` where it has any (ComfyUnCLIPPooled)."""
        out = []
        for cond, half in zip(conds, ("positive", "negative")):
            if cond.get("unclip"):
                pooled = f"{nid}_{half}_unclip"
                self.nodes[pooled] = {"type": "ComfyUnCLIPPooled", "unclip": cond["unclip"], "seed": seed,
                                      **({"pooled": cond["pooled"]} if cond.get("pooled") else {})}
                cond = dict(cond, pooled=f"${pooled}.pooled")
            out.append(cond)
        return tuple(out)
