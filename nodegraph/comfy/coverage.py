"""Which ComfyUI node classes the import covers: their widgets (UI order), literal types and output types.

`widgets` lists a class's widget inputs in the order a UI workflow's `widgets_values` holds them; names
starting with `__` are front-end-only slots (the seed's "control after generate"). `literals` gives each
literal input's Python type; `outputs` the class's output types by index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodegraph.comfy.samplers import SAMPLERS
from nodegraph.comfy.schedules import SCHEDULERS


@dataclass(frozen=True)
class Covered:
    widgets: tuple[str, ...]
    literals: dict[str, type] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    links: tuple[str, ...] = ()  # linked inputs it needs


COVERED: dict[str, Covered] = {
    "CheckpointLoaderSimple": Covered(("ckpt_name",), {"ckpt_name": str}, ("MODEL", "CLIP", "VAE")),
    "VAELoader": Covered(("vae_name",), {"vae_name": str}, ("VAE",)),
    "LoraLoader": Covered(("lora_name", "strength_model", "strength_clip"),
                          {"lora_name": str, "strength_model": float, "strength_clip": float},
                          ("MODEL", "CLIP"), ("model", "clip")),
    "LoraLoaderModelOnly": Covered(("lora_name", "strength_model"), {"lora_name": str, "strength_model": float},
                                   ("MODEL",), ("model",)),
    "CLIPSetLastLayer": Covered(("stop_at_clip_layer",), {"stop_at_clip_layer": int}, ("CLIP",), ("clip",)),
    "CLIPTextEncode": Covered(("text",), {"text": str}, ("CONDITIONING",), ("clip",)),
    "CLIPTextEncodeSDXL": Covered(
        ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l"),
        {"width": int, "height": int, "crop_w": int, "crop_h": int, "target_width": int, "target_height": int,
         "text_g": str, "text_l": str}, ("CONDITIONING",), ("clip",)),
    "CLIPTextEncodeSDXLRefiner": Covered(("ascore", "width", "height", "text"),
                                         {"ascore": float, "width": int, "height": int, "text": str},
                                         ("CONDITIONING",), ("clip",)),
    "EmptyLatentImage": Covered(("width", "height", "batch_size"),
                                {"width": int, "height": int, "batch_size": int}, ("LATENT",)),
    "KSampler": Covered(("seed", "__control", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
                        {"seed": int, "steps": int, "cfg": float, "sampler_name": str, "scheduler": str,
                         "denoise": float}, ("LATENT",), ("model", "positive", "negative", "latent_image")),
    "KSamplerAdvanced": Covered(
        ("add_noise", "noise_seed", "__control", "steps", "cfg", "sampler_name", "scheduler", "start_at_step",
         "end_at_step", "return_with_leftover_noise"),
        {"add_noise": str, "noise_seed": int, "steps": int, "cfg": float, "sampler_name": str, "scheduler": str,
         "start_at_step": int, "end_at_step": int, "return_with_leftover_noise": str},
        ("LATENT",), ("model", "positive", "negative", "latent_image")),
    "KSamplerSelect": Covered(("sampler_name",), {"sampler_name": str}, ("SAMPLER",)),
    "BasicScheduler": Covered(("scheduler", "steps", "denoise"), {"scheduler": str, "steps": int, "denoise": float},
                              ("SIGMAS",), ("model",)),
    "SamplerCustom": Covered(("add_noise", "noise_seed", "__control", "cfg"),
                             {"add_noise": bool, "noise_seed": int, "cfg": float}, ("LATENT", "LATENT"),
                             ("model", "positive", "negative", "sampler", "sigmas", "latent_image")),
    "LatentUpscale": Covered(("upscale_method", "width", "height", "crop"),
                             {"upscale_method": str, "width": int, "height": int, "crop": str}, ("LATENT",),
                             ("samples",)),
    "LatentUpscaleBy": Covered(("upscale_method", "scale_by"), {"upscale_method": str, "scale_by": float},
                               ("LATENT",), ("samples",)),
    "ImageScale": Covered(("upscale_method", "width", "height", "crop"),
                          {"upscale_method": str, "width": int, "height": int, "crop": str}, ("IMAGE",), ("image",)),
    "ImageScaleToTotalPixels": Covered(("upscale_method", "megapixels", "resolution_steps"),
                                       {"upscale_method": str, "megapixels": float, "resolution_steps": int},
                                       ("IMAGE",), ("image",)),
    "SDTurboScheduler": Covered(("steps", "denoise"), {"steps": int, "denoise": float}, ("SIGMAS",), ("model",)),
    "ConditioningSetArea": Covered(("width", "height", "x", "y", "strength"),
                                   {"width": int, "height": int, "x": int, "y": int, "strength": float},
                                   ("CONDITIONING",), ("conditioning",)),
    "ConditioningCombine": Covered((), {}, ("CONDITIONING",), ("conditioning_1", "conditioning_2")),
    "ConditioningZeroOut": Covered((), {}, ("CONDITIONING",), ("conditioning",)),
    "UpscaleModelLoader": Covered(("model_name",), {"model_name": str}, ("UPSCALE_MODEL",)),
    "ImageUpscaleWithModel": Covered((), {}, ("IMAGE",), ("upscale_model", "image")),
    "Canny": Covered(("low_threshold", "high_threshold"), {"low_threshold": float, "high_threshold": float},
                     ("IMAGE",), ("image",)),
    "VAEEncodeForInpaint": Covered(("grow_mask_by",), {"grow_mask_by": int}, ("LATENT",), ("pixels", "vae", "mask")),
    "ImagePadForOutpaint": Covered(("left", "top", "right", "bottom", "feathering"),
                                   {"left": int, "top": int, "right": int, "bottom": int, "feathering": int},
                                   ("IMAGE", "MASK"), ("image",)),
    "VAEDecode": Covered((), {}, ("IMAGE",), ("samples", "vae")),
    "VAEEncode": Covered((), {}, ("LATENT",), ("pixels", "vae")),
    "LoadImage": Covered(("image", "__upload"), {"image": str}, ("IMAGE", "MASK")),
    "ControlNetLoader": Covered(("control_net_name",), {"control_net_name": str}, ("CONTROL_NET",)),
    "ControlNetApply": Covered(("strength",), {"strength": float}, ("CONDITIONING",),
                               ("conditioning", "control_net", "image")),
    "ControlNetApplyAdvanced": Covered(("strength", "start_percent", "end_percent"),
                                       {"strength": float, "start_percent": float, "end_percent": float},
                                       ("CONDITIONING", "CONDITIONING"), ("positive", "negative", "control_net", "image")),
    "UNETLoader": Covered(("unet_name", "weight_dtype"), {"unet_name": str, "weight_dtype": str}, ("MODEL",)),
    "CLIPLoader": Covered(("clip_name", "type", "device"), {"clip_name": str, "type": str, "device": str}, ("CLIP",)),
    "DualCLIPLoader": Covered(("clip_name1", "clip_name2", "type", "device"),
                              {"clip_name1": str, "clip_name2": str, "type": str, "device": str}, ("CLIP",)),
    "FluxGuidance": Covered(("guidance",), {"guidance": float}, ("CONDITIONING",), ("conditioning",)),
    "RandomNoise": Covered(("noise_seed", "__control"), {"noise_seed": int}, ("NOISE",)),
    "DisableNoise": Covered((), {}, ("NOISE",)),
    "BasicGuider": Covered((), {}, ("GUIDER",), ("model", "conditioning")),
    "CFGGuider": Covered(("cfg",), {"cfg": float}, ("GUIDER",), ("model", "positive", "negative")),
    "SamplerCustomAdvanced": Covered((), {}, ("LATENT", "LATENT"), ("noise", "guider", "sampler", "sigmas",
                                                                     "latent_image")),
    "CLIPTextEncodeFlux": Covered(("clip_l", "t5xxl", "guidance"), {"clip_l": str, "t5xxl": str, "guidance": float},
                                  ("CONDITIONING",), ("clip",)),
    "ModelSamplingAuraFlow": Covered(("shift",), {"shift": float}, ("MODEL",), ("model",)),
    "EmptySD3LatentImage": Covered(("width", "height", "batch_size"),
                                   {"width": int, "height": int, "batch_size": int}, ("LATENT",)),
    "SaveImage": Covered(("filename_prefix",), {"filename_prefix": str}, (), ("images",)),
    "SaveImageAdvanced": Covered(("filename_prefix", "format", "bit_depth", "color_space"),
                                 {"filename_prefix": str, "format": str, "bit_depth": str, "color_space": str}, (),
                                 ("images",)),
    "ResolutionSelector": Covered(("aspect_ratio", "megapixels", "multiple", "minimum"),
                                  {"aspect_ratio": str, "megapixels": float, "multiple": int, "minimum": int},
                                  ("INT", "INT")),
    "PreviewImage": Covered((), {}, (), ("images",)),
}
OUTPUT_CLASSES = ("SaveImage", "PreviewImage", "SaveImageAdvanced")
SHORT_NAMES = {  # a translated node's id prefix, by class
    "CheckpointLoaderSimple": "ckpt", "VAELoader": "vae", "LoraLoader": "lora", "LoraLoaderModelOnly": "lora",
    "CLIPSetLastLayer": "clip_layer", "CLIPTextEncode": "text", "EmptyLatentImage": "latent",
    "CLIPTextEncodeSDXL": "text", "CLIPTextEncodeSDXLRefiner": "text", "KSampler": "ksampler",
    "KSamplerAdvanced": "ksampler", "LatentUpscale": "upscale", "VAEDecode": "decode", "VAEEncode": "encode",
    "LoadImage": "image", "KSamplerSelect": "sampler", "BasicScheduler": "sigmas", "SamplerCustom": "custom",
    "ControlNetLoader": "controlnet", "ControlNetApplyAdvanced": "control", "ControlNetApply": "control",
    "SaveImage": "save", "PreviewImage": "preview", "LatentUpscaleBy": "upscale", "ImageScale": "scale",
    "ImageScaleToTotalPixels": "scale", "SDTurboScheduler": "sigmas", "ConditioningSetArea": "area",
    "ConditioningCombine": "combine", "ConditioningZeroOut": "zero", "UpscaleModelLoader": "upscaler",
    "ImageUpscaleWithModel": "upscale", "Canny": "canny", "VAEEncodeForInpaint": "encode",
    "ImagePadForOutpaint": "pad", "UNETLoader": "unet", "CLIPLoader": "clip", "EmptySD3LatentImage": "latent",
    "ModelSamplingAuraFlow": "sampling", "DualCLIPLoader": "clip", "FluxGuidance": "guidance",
    "CLIPTextEncodeFlux": "text", "SaveImageAdvanced": "save", "RandomNoise": "noise", "DisableNoise": "noise",
    "BasicGuider": "guider", "CFGGuider": "guider", "SamplerCustomAdvanced": "custom"}
MODEL_KINDS = {  # ComfyUI's folder of the file a literal input names
    "ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras", "image": "input",
    "control_net_name": "controlnet", "model_name": "upscale_models", "unet_name": "diffusion_models",
    "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders"}
# The front end's own widget orders for classes we refuse, so their UI workflows still convert (and are refused
# by name rather than by a confusing widget error).
_OTHER_WIDGETS = {"Note": ("text",), "MarkdownNote": ("text",), "PrimitiveNode": ("value", "__control")}
CHOICES = {
    "sampler_name": SAMPLERS,
    "scheduler": SCHEDULERS,
    "add_noise": ("enable", "disable"),
    "return_with_leftover_noise": ("disable", "enable"),
    "upscale_method": ("nearest-exact", "bilinear", "area", "bicubic", "lanczos"),  # lanczos: images only
    "crop": ("disabled", "center"),
}


# Values of a class's inputs that decide whether nodegraph can run it (refused by name, like a sampler):
# CLIPLoader's `lumina2` is the Qwen3 encoder of Z-Image, DualCLIPLoader's `flux` Flux.1's CLIP-L + T5-XXL;
# UNETLoader's other weight dtypes are fp8 storage; SaveImageAdvanced runs as SaveImage for 8-bit sRGB PNGs.
CLASS_VALUES = {"CLIPLoader": {"type": ("lumina2",)}, "DualCLIPLoader": {"type": ("flux",)},
                "UNETLoader": {"weight_dtype": ("default",)},
                "SaveImageAdvanced": {"format": ("png",), "bit_depth": ("8-bit",), "color_space": ("sRGB",)}}


def checked_values(class_type: str) -> dict[str, tuple[str, ...]]:
    """Input name → the values covered, for the inputs `refusals` checks on a node of `class_type`."""
    return {"sampler_name": CHOICES["sampler_name"], "scheduler": CHOICES["scheduler"],
            **CLASS_VALUES.get(class_type, {})}


def widget_names(class_type: str) -> tuple[str, ...] | None:
    covered = COVERED.get(class_type)
    return covered.widgets if covered else _OTHER_WIDGETS.get(class_type)


def coverage_table() -> str:
    """Markdown rows `| class | widgets | outputs |`, for docs/comfyui.md and `import-comfy --coverage`."""
    rows = ["| ComfyUI class | widgets (UI order) | outputs |", "|---|---|---|"]
    for name, c in COVERED.items():
        widgets = ", ".join(w for w in c.widgets if not w.startswith("__")) or "—"
        rows.append(f"| {name} | {widgets} | {', '.join(c.outputs) or '(writes images)'} |")
    return "\n".join(rows)
