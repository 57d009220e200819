"""What ComfyUI reads from a checkpoint file before sampling: its family, what its UNet predicts, its CLIP's depth.

Facts from comfy/supported_models.py: an SD 2.x UNet (4 input channels) predicts v when the file's
`output_blocks.11.1.transformer_blocks.0.norm1.bias` has a (biased) standard deviation above 0.09 — the 768-v
models — and ε otherwise; an SDXL file predicts v when it holds a `v_pred` key. ComfyUI loads every text
encoder layer the file holds, and counts CLIPSetLastLayer's layers from the file's last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nodegraph.comfy.errors import ComfyError
from nodegraph.models.weight_files import PICKLES, without_scales

COVERED_FAMILIES = ("sd1", "sd2", "sdxl_base", "sdxl_refiner", "sd1_inpaint", "sd2_inpaint")
_SD2_V_KEY = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
_SD2_V_STD = 0.09
_SD2_TEXT_LAYER = "cond_stage_model.model.transformer.resblocks."


@dataclass(frozen=True)
class Checkpoint:
    family: str  # detect()'s name: sd1, sd2, sdxl_base, sdxl_refiner, …
    prediction: str = "eps"  # "eps" or "v"
    clip_layers: int | None = None  # the file's text encoder layers, where nodegraph may load fewer (SD 2.x)
    text_encoders: tuple[str, ...] | None = None  # SD3: which of clip_l, clip_g, t5xxl the file holds (None: all)


def read_checkpoint(path: Path) -> Checkpoint:
    """The family (from tensor names and shapes), prediction type and CLIP depth of a single file, ComfyUI's way."""
    from nodegraph.models.errors import CheckpointError
    from nodegraph.models.single_file.detect import detect

    try:
        shapes = without_scales(_shapes(path))  # scaled fp8 (`scale_weight`s) loads as float8 (models/scaled_fp8.py)
        if any(key.endswith((".comfy_quant", ".weight_scale")) for key in shapes):
            raise ComfyError(f"{path}: a ComfyUI quantized export (per-layer `comfy_quant` / `weight_scale` "
                             f"tensors: int8, mixed fp8 or nvfp4), which nodegraph does not read; use the bf16 file")
        flow = flow_family(shapes)
        if flow:
            held = tuple(name for name in ("clip_l", "clip_g", "t5xxl")
                         if any(key.startswith(f"text_encoders.{name}.transformer.") for key in shapes))
            return Checkpoint(flow, text_encoders=held if flow == "sd3" else None)
        name = detect(shapes, str(path)).name
    except CheckpointError as exc:
        raise ComfyError(str(exc)) from None
    if name in ("sd2", "sd2_inpaint"):  # inpainting UNets (9 input channels) are ε in ComfyUI, whatever the std
        from nodegraph.models.single_file.loader import opened  # torch: the v test reads a tensor

        ckpt = opened(path)
        layers = 1 + max((int(k[len(_SD2_TEXT_LAYER):].split(".")[0]) for k in shapes
                          if k.startswith(_SD2_TEXT_LAYER)), default=-1)
        v = name == "sd2" and _SD2_V_KEY in shapes and \
            float(_tensor(ckpt, _SD2_V_KEY).float().std(unbiased=False)) > _SD2_V_STD
        return Checkpoint(name, "v" if v else "eps", layers or None)
    if name == "sdxl_base" and any(k in shapes for k in ("edm_vpred.sigma_max", "ztsnr", "edm_mean")):
        raise ComfyError(f"{path.name}: an SDXL checkpoint with its own noise schedule (EDM, zero-terminal-SNR or "
                         f"Playground's) is not covered by the ComfyUI import yet")
    return Checkpoint(name, "v" if name == "sdxl_base" and "v_pred" in shapes else "eps")


def flow_family(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """"z_image" for a Z-Image transformer file (`layers.0.adaLN_modulation.0.weight` beside `cap_embedder.0.weight`,
    bare or under `model.diffusion_model.`), "qwen3" for a Qwen3 text encoder (`embed_tokens` with per-head
    `q_norm`, bare or under `model.`), as nodegraph/models/single_file/z_image.py tells them; "flux_dev" /
    "flux_schnell" for BFL's Flux.1 transformer (`double_blocks.0.img_attn.norm.key_norm.scale`, dev with
    `guidance_in`), "sd3" for SAI's SD3 / SD3.5 MMDiT (`joint_blocks.0.context_block.adaLN_modulation.1.bias`),
    "clip_l" / "clip_g" / "t5" for ComfyUI's text_encoders/ files of those (HF names; bigG told by its 31st layer,
    as comfy/sd.py `detect_te_model`); else None."""
    for prefix in ("", "model.diffusion_model."):
        if {prefix + "layers.0.adaLN_modulation.0.weight", prefix + "cap_embedder.0.weight"} <= shapes.keys():
            return "z_image"
        if prefix + "double_blocks.0.img_attn.norm.key_norm.scale" in shapes:
            return "flux_dev" if prefix + "guidance_in.in_layer.bias" in shapes else "flux_schnell"
        if prefix + "joint_blocks.0.context_block.adaLN_modulation.1.bias" in shapes:
            return "sd3"
    if "text_model.encoder.layers.0.self_attn.q_proj.weight" in shapes:  # bigG: 32 layers (ComfyUI: a 31st)
        return "clip_g" if "text_model.encoder.layers.30.mlp.fc1.weight" in shapes else "clip_l"
    if "encoder.block.0.layer.0.SelfAttention.q.weight" in shapes:
        return "t5"
    for prefix in ("", "model."):
        if {prefix + "layers.0.self_attn.q_norm.weight", prefix + "embed_tokens.weight"} <= shapes.keys():
            return "qwen3"
    return None


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape by name. A safetensors file's header is read without importing torch, so that torch is
    imported where a graph file's run imports it: when the read-ahead of cold weight files starts
    (nodegraph/exec/prefetch.py), or in the first loader. (The loaders parse the header again, once, for the
    weights' offsets: a few milliseconds.)"""
    if path.suffix.lower() in PICKLES:  # only torch reads a pickle
        from nodegraph.models.single_file.loader import opened

        return opened(path).shapes
    from nodegraph.models.errors import CheckpointError
    from nodegraph.models.weight_files import read_safetensors_header  # bounded and type-checked

    try:
        return {key: tuple(info.shape) for key, info in read_safetensors_header(path, str(path)).tensors.items()}
    except CheckpointError as exc:
        reason = str(exc).replace(str(path), "").lstrip(": ").rstrip(".")
        raise ComfyError(f"{path}: not a readable safetensors file ({reason})") from None


def _tensor(ckpt, key: str):
    entry = ckpt.entries[key]
    if getattr(entry, "tensor", None) is not None:
        return entry.tensor
    from safetensors import safe_open

    with safe_open(str(ckpt.path), framework="pt") as f:
        return f.get_tensor(key)


# T2I-Adapters, which ComfyUI's ControlNetLoader also loads (comfy/controlnet.py `load_t2i_adapter`): the
# original full adapter (`conv_in` + `body.N.block1`), the light one (`body.N.in_conv`) and diffusers' layout
# (`adapter.body.N.resnets…`), told apart from ControlNets by their tensor names.
_T2I_KEYS = ("body.0.block1.weight", "body.0.in_conv.weight", "adapter.body.0.resnets.0.block1.weight")


def is_t2i_adapter(path: Path, allow_pickle: bool = False) -> bool:
    """Whether a ControlNetLoader's file is a T2I-Adapter: a .safetensors file by its header; a pickle only when
    allowed, by the names torch.load(weights_only=True, memory-mapped) finds in it (False when not allowed)."""
    if not path.is_file() or (path.suffix.lower() in PICKLES and not allow_pickle):
        return False
    try:
        if path.suffix.lower() in PICKLES:
            from nodegraph.models.errors import CheckpointError
            from nodegraph.models.single_file.loader import opened

            try:
                return any(key.endswith(_T2I_KEYS) for key in opened(path, allow_pickle=True).shapes)
            except CheckpointError:  # the loader names the problem when it opens the file
                return False
        return any(key.endswith(_T2I_KEYS) for key in _shapes(path))
    except ComfyError:  # unreadable: the ControlNet loader says so when it opens the file
        return False
