"""ComfyUI's inpainting nodes → nodegraph nodes (LoadImage's MASK, VAEEncodeForInpaint, ImagePadForOutpaint) and the
noise mask's way into a KSampler (ComfyInpaint): a mixin of translate.py's translator."""

from __future__ import annotations

from nodegraph.comfy.errors import ComfyError


class InpaintTranslations:
    def mask(self, node_id, name: str) -> str:
        """The reference of a MASK input (LoadImage's mask node made on first use)."""
        value = self.link(node_id, name, "MASK")
        if isinstance(value, dict):  # LoadImage's: 1 − alpha of its file
            if value["node"] not in self.nodes:
                self.nodes[value["node"]] = {"type": "ComfyLoadImageMask", "path": value["mask_of"]}
            return f"${value['node']}.mask"
        return value

    def inpaint(self, node_id, nid, model: dict, latent: str, seed: str):
        """The ComfyInpaint node for a KSampler whose latent carries a noise mask (None when it carries none)."""
        noise_mask = self.__dict__.setdefault("noise_masks", {}).get(latent)
        if noise_mask is None:
            if model.get("inpaint"):
                raise ComfyError(f"{self.where(node_id, 'latent_image')}: the model is an inpainting one; give it a "
                                 f"latent from VAEEncodeForInpaint (its mask), as nodegraph covers it")
            return None
        self.nodes[f"{nid}_inpaint"] = {"type": "ComfyInpaint", "latents": latent, "noise_mask": noise_mask,
                                        "seed": seed, "concat": bool(model.get("inpaint"))}
        return f"${nid}_inpaint.inpaint"

    def _VAEEncodeForInpaint(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyVAEEncodeForInpaint", "vae": self.link(node_id, "vae", "VAE"),
                           "image": self.link(node_id, "pixels", "IMAGE"), "mask": self.mask(node_id, "mask"),
                           "grow_mask_by": self.literal(node_id, "grow_mask_by", 6)}
        self.__dict__.setdefault("noise_masks", {})[f"${nid}.latents"] = f"${nid}.noise_mask"
        return (f"${nid}.latents",)

    def _ImagePadForOutpaint(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyImagePadForOutpaint", "image": self.link(node_id, "image", "IMAGE"),
                           **{side: self.literal(node_id, side) for side in ("left", "top", "right", "bottom")},
                           "feathering": self.literal(node_id, "feathering", 40)}
        return (f"${nid}.image", f"${nid}.mask")
