"""ComfyUI's image and latent resizing nodes, model upscaling and SDTurboScheduler → nodegraph nodes: a mixin of
translate.py's translator (its `literal`, `link`, `nodes`)."""

from __future__ import annotations


class ImageTranslations:
    def _LatentUpscale(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyLatentUpscale", "latents": self.link(node_id, "samples", "LATENT"),
                           "upscale_method": self.literal(node_id, "upscale_method"),
                           "width": self.literal(node_id, "width"), "height": self.literal(node_id, "height"),
                           "crop": self.literal(node_id, "crop", "disabled")}
        return (f"${nid}.latents",)

    def _VAEEncode(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyVAEEncode", "vae": self.link(node_id, "vae", "VAE"),
                           "image": self.link(node_id, "pixels", "IMAGE")}
        return (f"${nid}.latents",)

    def _LoadImage(self, node_id, nid):
        # ComfyUI's own resize rule: none (the file's size). Its MASK (1 − alpha) is a node made where it is used.
        path = self.literal(node_id, "image")
        self.nodes[nid] = {"type": "LoadImage", "path": path, "multiple_of": 1}
        return (f"${nid}.image", {"mask_of": path, "node": f"{nid}_mask"})

    def _VAEDecode(self, node_id, nid):
        self.nodes[nid] = {"type": "VAEDecode", "vae": self.link(node_id, "vae", "VAE"),
                           "latents": self.link(node_id, "samples", "LATENT")}
        return (f"${nid}.image",)

    def _ImageScale(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyImageScale", "image": self.link(node_id, "image", "IMAGE"),
                           "upscale_method": self.literal(node_id, "upscale_method"),
                           "width": self.literal(node_id, "width"), "height": self.literal(node_id, "height"),
                           "crop": self.literal(node_id, "crop", "disabled")}
        return (f"${nid}.image",)

    def _ImageScaleToTotalPixels(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyImageScaleToTotalPixels", "image": self.link(node_id, "image", "IMAGE"),
                           "upscale_method": self.literal(node_id, "upscale_method", "nearest-exact"),
                           "megapixels": self.literal(node_id, "megapixels", 1.0),
                           "resolution_steps": self.literal(node_id, "resolution_steps", 1)}
        return (f"${nid}.image",)

    def _LatentUpscaleBy(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyLatentUpscaleBy", "latents": self.link(node_id, "samples", "LATENT"),
                           "upscale_method": self.literal(node_id, "upscale_method"),
                           "scale_by": self.literal(node_id, "scale_by")}
        return (f"${nid}.latents",)

    def _SDTurboScheduler(self, node_id, nid):
        self.link(node_id, "model", "MODEL")  # ComfyUI reads the σ table from the model; SD's is built in
        self.nodes[nid] = {"type": "ComfyTurboSigmas", "steps": self.literal(node_id, "steps", 1),
                           "denoise": self.literal(node_id, "denoise", 1.0)}
        return (nid,)

    def _UpscaleModelLoader(self, node_id, nid):
        self.nodes[nid] = {"type": "LoadUpscaleModel", "model": self.literal(node_id, "model_name"),
                           "allow_pickle": self.allow_pickle()}
        return (f"${nid}.upscale_model",)

    def _ImageUpscaleWithModel(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyImageUpscaleWithModel",
                           "upscale_model": self.link(node_id, "upscale_model", "UPSCALE_MODEL"),
                           "image": self.link(node_id, "image", "IMAGE")}
        return (f"${nid}.image",)

    def _Canny(self, node_id, nid):
        self.nodes[nid] = {"type": "ComfyCanny", "image": self.link(node_id, "image", "IMAGE"),
                           "low_threshold": self.literal(node_id, "low_threshold"),
                           "high_threshold": self.literal(node_id, "high_threshold")}
        return (f"${nid}.image",)
