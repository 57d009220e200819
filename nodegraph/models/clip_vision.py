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


# Sizes a CLIP-vision file may declare: bigG is 1664 wide, 48 layers, 8192 in its MLP, 257 positions; well above
# them, a file's sizes are refused before a model of that size is even described
MAX_WIDTH, MAX_LAYERS, MAX_INTERMEDIATE, MAX_SIDE, MAX_PATCH, MAX_PROJECTION = 4096, 64, 16384, 64, 64, 4096


def _size(state: dict, key: str, ndim: int, axis: int, shown: str) -> int:
    """Dimension `axis` of tensor `key`, which must have `ndim` dimensions (VisionFileError otherwise)."""
    value = state.get(key)
    if value is None or value.dim() != ndim:
        got = "missing" if value is None else f"of shape {tuple(value.shape)}"
        raise VisionFileError(f"{shown}: `{key}` is {got}, not a {ndim}-D tensor as in a CLIP-vision tower")
    return int(value.shape[axis])


def vision_shape(state: dict, shown: str) -> VisionShape:
    """The tower's sizes, read from its weights' shapes (heads and activation: see the module), each bounded."""
    hidden = _size(state, f"{_PREFIX}embeddings.class_embedding", 1, 0, shown)
    patch = _size(state, f"{_PREFIX}embeddings.patch_embedding.weight", 4, -1, shown)
    positions = _size(state, f"{_PREFIX}embeddings.position_embedding.weight", 2, 0, shown)
    side = round(max(positions - 1, 0) ** 0.5)
    layers = len({k.split(".")[3] for k in state if k.startswith(f"{_PREFIX}encoder.layers.")})
    if side * side != positions - 1 or side == 0 or layers == 0:
        raise VisionFileError(f"{shown}: {positions} positions and {layers} layers are not a square-image CLIP tower")
    intermediate = _size(state, f"{_PREFIX}encoder.layers.0.mlp.fc1.weight", 2, 0, shown)
    projection = _size(state, "visual_projection.weight", 2, 0, shown)
    for what, value, most in (("width", hidden, MAX_WIDTH), ("layer count", layers, MAX_LAYERS),
                              ("MLP width", intermediate, MAX_INTERMEDIATE), ("patch size", patch, MAX_PATCH),
                              ("patches per side", side, MAX_SIDE), ("projection width", projection, MAX_PROJECTION)):
        if not 0 < value <= most:
            raise VisionFileError(f"{shown}: a CLIP tower's {what} of {value} is outside 1..{most} (clip_vision_g "
                                  f"is 1664 wide with 48 layers); the file is damaged or not a CLIP-vision model")
    heads, activation = _KNOWN.get(hidden, (hidden // 64, "gelu"))
    if hidden not in _KNOWN and hidden % 64:
        raise VisionFileError(f"{shown}: a CLIP tower {hidden} wide has no known head count (known widths: "
                              f"{', '.join(map(str, _KNOWN))}, or a multiple of 64)")
    return VisionShape(hidden, layers, intermediate, patch, side * patch, projection, heads, activation)


def header_state(tensors: dict, shown: str) -> dict:
    """Shape-only stand-ins (meta tensors, no memory) for a safetensors header's tensors {name: info.shape}, so a
    file's layout is checked before its data is read."""
    import torch

    try:
        return {k: torch.empty(tuple(info.shape), device="meta") for k, info in tensors.items()}
    except (RuntimeError, ValueError, OverflowError) as exc:
        raise VisionFileError(f"{shown} declares a tensor shape torch cannot hold ({exc})") from None


def check_clip_vision(state: dict, shown: str = "the file"):
    """(tower weights under transformers' names, the tower built on the meta device): every key and shape of the
    tower its sizes describe checked against `state` (real or meta tensors) before any weight is allocated."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    try:
        state = vision_state(state, shown)
    except (RuntimeError, IndexError) as exc:  # an OpenCLIP qkv or projection of the wrong rank
        raise VisionFileError(f"{shown}: its OpenCLIP tensors are not shaped as a CLIP tower's ({exc})") from None
    shape = vision_shape(state, shown)
    config = CLIPVisionConfig(
        hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, patch_size=shape.patch, image_size=shape.image_size,
        projection_dim=shape.projection, hidden_act=shape.activation, layer_norm_eps=1e-5)
    with torch.device("meta"):  # sizes only: nothing is allocated before the file is checked against them
        model = CLIPVisionModelWithProjection(config)
    own = model.state_dict()
    problems = [f"`{k}` is {tuple(v.shape)}, not {tuple(own[k].shape)}" for k, v in state.items()
                if k in own and own[k].shape != v.shape]
    problems += [f"`{k}` is missing" for k in own if k not in state and not k.endswith("position_ids")]
    problems += [f"`{k}` is not part of the tower" for k in state if k not in own]
    if problems:
        raise VisionFileError(f"{shown}: its CLIP-vision weights do not fit the {shape.layers}-layer, "
                              f"{shape.hidden}-wide tower their shapes describe ({len(problems)} problems: "
                              f"{'; '.join(problems[:3])}{'; …' if len(problems) > 3 else ''})")
    return state, model


def load_clip_vision(state: dict, shown: str = "the file"):
    """A float32 CLIPVisionModelWithProjection holding `state` (a CLIP-vision file's tensors), in eval mode;
    checked first (check_clip_vision), then the file's tensors assigned into the meta-built tower."""
    import torch

    state, model = check_clip_vision(state, shown)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False, assign=True)
    for name, buffer in list(model.named_buffers()):  # buffers no file holds (position_ids), made on the CPU
        if buffer.is_meta:
            owner, _, attr = name.rpartition(".")
            if attr != "position_ids":
                raise RuntimeError(f"CLIP-vision buffer `{name}` has no value (transformers changed its layout)")
            setattr(model.get_submodule(owner), attr, torch.arange(buffer.shape[-1]).expand(buffer.shape))
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
