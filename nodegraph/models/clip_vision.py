"""CLIP's image tower (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"): the CLIP-vision files ComfyUI's CLIPVisionLoader reads (clip_vision_g / _h / ViT-L), as
transformers' CLIPVisionModelWithProjection on the file's own weights.

pixels (B, 3, S, S) → 14×14 patches (conv) + a class token + positions → pre-LayerNorm → L pre-norm transformer
layers → post-LayerNorm of the class token → `visual_projection`: image_embeds (B, projection_dim).

A file holds no head count or activation: ComfyUI picks one of its JSON configs by the layer count; here the
known widths give them (1664 bigG and 1280 ViT-H: 16 heads, gelu; 1024 ViT-L: 16 heads, quick_gelu) and any
other width (tiny test towers) takes 64-wide heads and gelu. Files in the OpenCLIP layout (`visual.transformer.
resblocks.N…`) are renamed to transformers' layout, as ComfyUI's clip_vision.py `convert_to_transformers` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_KNOWN = {1664: (16, "gelu"), 1280: (16, "gelu"), 1024: (16, "quick_gelu")}  # width → (heads, activation)
_PREFIX = "vision_model."


@dataclass(frozen=True)
class VisionShape:
    hidden: int
    layers: int
    intermediate: int
    patch: int
    image_size: int
    projection: int
    heads: int
    activation: str


class VisionFileError(ValueError):
    """The file is not a CLIP-vision tower this module reads."""


def _openclip_to_transformers(state: dict) -> dict:
    """OpenCLIP's `visual.` layout → transformers' names (fused qkv split in three, `proj` transposed)."""
    renames = {"visual.class_embedding": "embeddings.class_embedding",
               "visual.conv1.weight": "embeddings.patch_embedding.weight",
               "visual.positional_embedding": "embeddings.position_embedding.weight",
               "visual.ln_pre.weight": "pre_layrnorm.weight", "visual.ln_pre.bias": "pre_layrnorm.bias",
               "visual.ln_post.weight": "post_layernorm.weight", "visual.ln_post.bias": "post_layernorm.bias"}
    parts = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    out = {}
    for key, value in state.items():
        if key in renames:
            out[_PREFIX + renames[key]] = value
        elif key == "visual.proj":  # (hidden, projection) → a Linear's (projection, hidden)
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := re.fullmatch(r"visual\.transformer\.resblocks\.(\d+)\.(.+)[._](weight|bias)", key):
            block, name, kind = m.groups()
            base = f"{_PREFIX}encoder.layers.{block}."
            if name == "attn.in_proj":  # attn.in_proj_weight (3·hidden, …) → q, k, v
                for proj, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{base}self_attn.{proj}.{kind}"] = chunk.contiguous()
            elif name in parts:
                out[f"{base}{parts[name]}.{kind}"] = value
    return out


def vision_state(state: dict, shown: str) -> dict:
    """The tower's weights under transformers' names (prefixes `clip_vision.` / `visual.` handled)."""
    if any(k.startswith("visual.transformer.resblocks.") for k in state):
        state = _openclip_to_transformers(state)
    for prefix in ("clip_vision.", "model."):  # a tower saved inside another module
        if not any(k.startswith(_PREFIX) for k in state) and any(k.startswith(prefix + _PREFIX) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    keep = {k: v for k, v in state.items() if k.startswith((_PREFIX, "visual_projection."))
            and not k.endswith("position_ids")}
    needed = (f"{_PREFIX}embeddings.class_embedding", f"{_PREFIX}embeddings.patch_embedding.weight",
              f"{_PREFIX}embeddings.position_embedding.weight", "visual_projection.weight")
    missing = [k for k in needed if k not in keep]
    if missing:
        raise VisionFileError(f"{shown} is not a CLIP-vision model (no `{missing[0]}`); CLIPVisionLoader reads "
                              f"CLIP image towers such as clip_vision_g.safetensors (transformers' or OpenCLIP's "
                              f"layout)")
    return keep


def vision_shape(state: dict, shown: str) -> VisionShape:
    """The tower's sizes, read from its weights' shapes (heads and activation: see the module)."""
    hidden = state[f"{_PREFIX}embeddings.class_embedding"].shape[0]
    patch = state[f"{_PREFIX}embeddings.patch_embedding.weight"].shape[-1]
    positions = state[f"{_PREFIX}embeddings.position_embedding.weight"].shape[0]
    side = round((positions - 1) ** 0.5)
    layers = len({k.split(".")[3] for k in state if k.startswith(f"{_PREFIX}encoder.layers.")})
    if side * side != positions - 1 or layers == 0:
        raise VisionFileError(f"{shown}: {positions} positions and {layers} layers are not a square-image CLIP tower")
    heads, activation = _KNOWN.get(hidden, (hidden // 64, "gelu"))
    if hidden not in _KNOWN and hidden % 64:
        raise VisionFileError(f"{shown}: a CLIP tower {hidden} wide has no known head count (known widths: "
                              f"{', '.join(map(str, _KNOWN))}, or a multiple of 64)")
    intermediate = state[f"{_PREFIX}encoder.layers.0.mlp.fc1.weight"].shape[0]
    return VisionShape(hidden, layers, intermediate, patch, side * patch,
                       state["visual_projection.weight"].shape[0], heads, activation)


def load_clip_vision(state: dict, shown: str = "the file"):
    """A float32 CLIPVisionModelWithProjection holding `state` (a CLIP-vision file's tensors), in eval mode."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    state = vision_state(state, shown)
    shape = vision_shape(state, shown)
    config = CLIPVisionConfig(
        hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, patch_size=shape.patch, image_size=shape.image_size,
        projection_dim=shape.projection, hidden_act=shape.activation, layer_norm_eps=1e-5)
    model = CLIPVisionModelWithProjection(config)
    own = model.state_dict()
    problems = [f"`{k}` is {tuple(v.shape)}, not {tuple(own[k].shape)}" for k, v in state.items()
                if k in own and own[k].shape != v.shape]
    problems += [f"`{k}` is missing" for k in own if k not in state and not k.endswith("position_ids")]
    problems += [f"`{k}` is not part of the tower" for k in state if k not in own]
    if problems:
        raise VisionFileError(f"{shown}: its CLIP-vision weights do not fit the tower their shapes describe "
                              f"({len(problems)} problems, e.g. {problems[0]})")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    return model.eval()


def clip_preprocess(image, size: int, crop: bool = True):
    """ComfyUI's CLIP preprocessing (comfy/clip_model.py `clip_preprocess`) of images (B, 3, H, W) in [0, 1].

    crop: scale the short side to `size` (each side rounded), bicubic with antialias, then the centre size×size;
    no crop: squash to size×size. Then quantised to 8-bit levels and normalised with CLIP's mean and std.
    """
    import torch
    import torch.nn.functional as F

    x = image[:, :3].float()  # (B, 3, H, W)
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        if crop:
            scale = size / min(h, w)
            target = (round(scale * h), round(scale * w))
        else:
            target = (size, size)
        x = F.interpolate(x, size=target, mode="bicubic", antialias=True)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[:, :, top:top + size, left:left + size]  # (B, 3, size, size)
    x = torch.clip(255.0 * x, 0, 255).round() / 255.0
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_image(model, image, crop: bool = True):
    """images (B, 3, H, W) in [0, 1] → image_embeds (B, projection_dim), as ComfyUI's CLIPVisionEncode."""
    import torch

    device = next(model.parameters()).device
    pixels = clip_preprocess(image.to(device), model.config.image_size, crop)
    with torch.no_grad():
        return model(pixel_values=pixels).image_embeds.float()
