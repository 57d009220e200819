"""Which model a single file holds, from its keys and shapes only (never its name).

A Stable Diffusion checkpoint in the original layout (CompVis LDM for SD1.x/2.x, Stability's SGM for SDXL) holds
the UNet under `model.diffusion_model.`, the VAE under `first_stage_model.`, and its text encoder(s) where the
family puts them. The family follows from which text encoder is present (CLIP-L, OpenCLIP ViT-H, or SDXL's
embedders) and from the UNet's input channels (9 = inpainting). A file that is not a whole model (a LoRA, a VAE,
a ControlNet, an embedding, a diffusers component's weights) is named as what it is, with where to pass it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nodegraph.models.errors import CheckpointError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
# diffusers' `infer_diffusers_model_type` key for SD2 (its width is 1024 in every real SD2 file)
_SD2_ATTN2_K = UNET_PREFIX + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"


@dataclass(frozen=True)
class TextEncoderLayout:
    component: str  # "text_encoder" or "text_encoder_2"
    prefix: str
    kind: str  # "clip" (transformers' CLIP layout) or "open_clip" (OpenCLIP's)


@dataclass(frozen=True)
class Family:
    """A checkpoint family: where each component's keys live, and the built-in configs (`configs/<config>.json`)."""

    name: str
    description: str
    text_encoders: tuple[TextEncoderLayout, ...]
    inpainting: bool = False

    @property
    def config(self) -> str:
        return self.name

    @property
    def base(self) -> str:
        return self.name.removesuffix("_inpaint")


_CLIP_L = TextEncoderLayout("text_encoder", "cond_stage_model.transformer.", "clip")
_OPEN_CLIP_SD2 = TextEncoderLayout("text_encoder", "cond_stage_model.model.", "open_clip")
_SDXL_CLIP_L = TextEncoderLayout("text_encoder", "conditioner.embedders.0.transformer.", "clip")
_SDXL_BIG_G = TextEncoderLayout("text_encoder_2", "conditioner.embedders.1.model.", "open_clip")
_REFINER_BIG_G = TextEncoderLayout("text_encoder_2", "conditioner.embedders.0.model.", "open_clip")

_FAMILIES = {
    "sd1": ("Stable Diffusion 1.x", (_CLIP_L,)),
    "sd2": ("Stable Diffusion 2.x", (_OPEN_CLIP_SD2,)),
    "sdxl_base": ("Stable Diffusion XL base", (_SDXL_CLIP_L, _SDXL_BIG_G)),
    "sdxl_refiner": ("Stable Diffusion XL refiner", (_REFINER_BIG_G,)),
}


def family(name: str) -> Family:
    base = name.removesuffix("_inpaint")
    description, encoders = _FAMILIES[base]
    inpainting = name != base
    return Family(name, description + (" inpainting" if inpainting else ""), encoders, inpainting)


FAMILY_NAMES = (*_FAMILIES, "sd1_inpaint", "sd2_inpaint", "sdxl_base_inpaint")


def detect(shapes: dict[str, tuple[int, ...]], shown: str) -> Family:
    """The family of the checkpoint whose keys and shapes are `shapes`; `shown` names the file in messages.

    Raises CheckpointError saying what the file looks like when it is not a whole SD/SDXL checkpoint.
    """
    if _CONV_IN not in shapes:
        raise CheckpointError(f"{shown} is not a Stable Diffusion checkpoint: {_what_else(shapes)}")
    if any(k.startswith("conditioner.embedders.1.model.") for k in shapes):
        base = "sdxl_base"
    elif any(k.startswith("conditioner.embedders.0.model.") for k in shapes):
        base = "sdxl_refiner"
    elif any(k.startswith("cond_stage_model.model.") for k in shapes):
        base = "sd2"
    elif any(k.startswith("cond_stage_model.transformer.") for k in shapes):
        base = "sd1"
    else:  # no text encoder in the file: fall back on the UNet's cross-attention width, as diffusers does
        base = {768: "sd1", 1024: "sd2", 2048: "sdxl_base", 1280: "sdxl_refiner"}.get(
            shapes.get(_SD2_ATTN2_K, (0,))[-1], "sd1")
    channels = shapes[_CONV_IN][1]
    if channels == 9:
        if base == "sdxl_refiner":
            raise CheckpointError(f"{shown}: an SDXL refiner with a 9-channel (inpainting) UNet is not supported.")
        return family(base + "_inpaint")
    if channels == 8:
        raise CheckpointError(f"{shown} looks like an InstructPix2Pix checkpoint (8-channel UNet input), which "
                              f"nodegraph does not support.")
    if channels != 4:
        raise CheckpointError(f"{shown}: the UNet takes {channels} input channels; nodegraph supports 4 "
                              f"(text to image) and 9 (inpainting).")
    return family(base)


def _what_else(shapes: dict[str, tuple[int, ...]]) -> str:
    keys = list(shapes)
    if not keys:
        return "it holds no tensors."
    if all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys) or \
            any(".lora_down." in k or ".lora_A." in k or ".lora_up." in k or ".lora_B." in k for k in keys):
        kind = "lora_unet_* keys" if any(k.startswith("lora_") for k in keys) else "lora_A/lora_B keys"
        return f"it holds LoRA weights ({kind}); pass it as `lora`, with a full checkpoint as `model`."
    if any(k.startswith(("control_model.", "controlnet_cond_embedding.")) or "input_hint_block." in k
           for k in keys):
        return ("it holds ControlNet weights (control_model.* keys), not a whole model; pass a full SD/SDXL "
                "checkpoint as `model`.")
    if set(keys) <= {"emb_params", "clip_l", "clip_g"} or any(k.startswith("string_to_param") for k in keys):
        return "it holds a textual-inversion embedding; pass it as `embedding`, with a full checkpoint as `model`."
    vae_like = [k for k in keys if k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv."))]
    if len(vae_like) == len(keys) or any(k.startswith(VAE_PREFIXES) for k in keys) and \
            not any(k.startswith(UNET_PREFIX) for k in keys):
        return "it holds VAE weights only; pass it as `vae`, with a full checkpoint as `model`."
    flow = _flow_family(shapes)
    if flow:
        return flow
    if "conv_in.weight" in shapes and any(k.startswith("down_blocks.") for k in keys):
        return ("it holds a diffusers UNet's weights alone; pass the folder holding it with its config.json "
                "(a diffusers pipeline folder), or a whole checkpoint file.")
    if any(k.startswith(("text_model.", "encoder.layers.")) for k in keys):
        return "it holds a text encoder's weights alone; pass a whole checkpoint file or a pipeline folder."
    return (f"its layout is unknown (no `{_CONV_IN}`). Top key prefixes found: {top_prefixes(keys)}. "
            f"nodegraph reads SD1.x, SD2.x and SDXL checkpoints in the original (LDM/SGM) layout, or diffusers "
            f"folders.")


def top_prefixes(keys: list[str], depth: int = 2, shown: int = 8) -> str:
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    listed = [f"{p} ({n})" for p, n in counts.most_common(shown)]
    more = f", … and {len(counts) - shown} more" if len(counts) > shown else ""
    return ", ".join(listed) + more


def _flow_family(shapes: dict[str, tuple[int, ...]]) -> str:
    from nodegraph.models.single_file.z_image import detect_flow_file

    found = detect_flow_file(shapes)
    if found is None:
        return ""
    component = "transformer" if found[0] == "z_image_transformer" else "text_encoder"
    return (f"it holds a Z-Image {component.replace('_', ' ')} alone (a flow-matching model, not Stable "
            f"Diffusion); run it with graphs/z_image.yaml, passing it as `{component}`.")
