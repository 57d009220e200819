"""Z-Image's single files: the transformer alone (ComfyUI's `diffusion_models/` file, as the publisher releases
it, bf16 or float8) and the Qwen3 text encoder alone (ComfyUI's `text_encoders/qwen_3_4b.safetensors`).

Detection is by keys and shapes: `layers.0.adaLN_modulation.0.weight` beside `cap_embedder.0.weight` (with or
without `model.diffusion_model.`) is a Z-Image transformer, as in diffusers' `infer_diffusers_model_type`
(checked before Lumina 2, which shares `cap_embedder`); `embed_tokens` with per-head `q_norm` is a Qwen3 decoder.
The transformer's keys are renamed as diffusers' `convert_z_image_transformer_checkpoint_to_diffusers` does:
`x_embedder.` → `all_x_embedder.2-1.`, `final_layer.` → `all_final_layer.2-1.`, `attention.out` →
`attention.to_out.0`, `q_norm`/`k_norm` → `norm_q`/`norm_k`, the fused `attention.qkv.weight` split in three
along its rows (a byte range each, so the split is still a view of the mapped file), `norm_final.weight` dropped.
A diffusers-named transformer file is read as it is. The config comes from `config` (a Z-Image folder or repo)
or is inferred from the shapes, with Z-Image-Turbo's values for what shapes cannot tell (RoPE axes, theta).
float8 tensors stay float8 and are upcast per layer at call time (models/fp8.py).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from nodegraph.models.checkpoint import Entry
from nodegraph.models.errors import CheckpointError

DIFFUSION_PREFIX = "model.diffusion_model."
_TRANSFORMER_KEY = "layers.0.adaLN_modulation.0.weight"
_QWEN3_KEY = "layers.0.self_attn.q_norm.weight"
_RENAMES = (("final_layer.", "all_final_layer.2-1."), ("x_embedder.", "all_x_embedder.2-1."),
            (".attention.out.", ".attention.to_out.0."), (".attention.q_norm.", ".attention.norm_q."),
            (".attention.k_norm.", ".attention.norm_k."))
FAMILIES = {"z_image_transformer": "Z-Image transformer", "qwen3_text_encoder": "Qwen3 text encoder (Z-Image)"}


def detect_flow_file(shapes: dict[str, tuple[int, ...]]) -> tuple[str, str] | None:
    """("z_image_transformer" | "qwen3_text_encoder", key prefix) for a file of these families, else None."""
    for prefix in ("", DIFFUSION_PREFIX):
        if prefix + _TRANSFORMER_KEY in shapes and prefix + "cap_embedder.0.weight" in shapes:
            return "z_image_transformer", prefix
    for prefix in ("", "model."):
        if prefix + _QWEN3_KEY in shapes and prefix + "embed_tokens.weight" in shapes:
            return "qwen3_text_encoder", prefix
    return None


def load_flow_file(ckpt, name: str, dtype: torch.dtype, device: torch.device, config: str | None,
                   store: str | None = None):
    """Component `name` of a Z-Image transformer or Qwen3 text-encoder file (a `CheckpointFile`); `store`
    ("fp8_e4m3fn", "fp8_e5m2") keeps a wider file's Linear weights in that float8 format (models/fp8.py)."""
    kind, prefix = detect_flow_file(ckpt.shapes)
    shown = str(ckpt.path)
    wanted = {"z_image_transformer": "transformer", "qwen3_text_encoder": "text_encoder"}[kind]
    if name != wanted:
        hint = " (the tokenizer is not in the file: pass the Z-Image folder or repo holding it)" \
            if name.startswith("tokenizer") else ""
        raise CheckpointError(f"{shown} holds a {FAMILIES[kind]} alone, not a `{name}`{hint}; pass it as "
                              f"`{wanted}`.")
    refuse_unsupported(ckpt.shapes, shown)
    if kind == "z_image_transformer":
        entries = transformer_entries(ckpt.entries, prefix)
        model = build_transformer(entries, config, shown)
    else:
        entries = {k[len(prefix):]: e for k, e in ckpt.entries.items() if k != "lm_head.weight"}
        model = build_text_encoder({k: e.shape for k, e in entries.items()}, config, shown)
    return install(model, entries, dtype, device, f"the {FAMILIES[kind]} of its config", store)


def refuse_unsupported(shapes: dict[str, tuple[int, ...]], shown: str) -> None:
    """Variants whose keys would otherwise only show up as a list of unexpected keys."""
    if any(".siglip_" in k or k.startswith(("siglip_", DIFFUSION_PREFIX + "siglip_")) for k in shapes):
        raise CheckpointError(f"{shown} is a Z-Image Omni transformer (SigLIP image inputs), which nodegraph does "
                              f"not support; use Z-Image or Z-Image-Turbo.")


def install(model, entries: dict[str, Entry], dtype: torch.dtype, device: torch.device, what: str,
            store: str | None = None):
    """Strict key/shape check, then the tensors: float8 ones kept as float8 (per-layer upcast), others in `dtype`
    (Linear weights in `store`'s float8 format when given)."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import fit, read_tensors

    fitted = fit(entries, model, lambda key: key, what)
    if store or any(e.dtype.is_floating_point and e.dtype.itemsize == 1 for e in fitted.values()):
        from nodegraph.models.fp8 import install_fp8

        install_fp8(model, fitted, dtype, device, store=store)
    else:
        install_weights(model, read_tensors(fitted, dtype, device))
    return model.eval()


def transformer_entries(entries: dict[str, Entry], prefix: str) -> dict[str, Entry]:
    """The file's tensors under diffusers' names (fused q/k/v split into three row ranges)."""
    out: dict[str, Entry] = {}
    for key, entry in entries.items():
        key = key[len(prefix):]
        if key == "norm_final.weight":  # in the original model, unused by Z-Image's forward (diffusers drops it)
            continue
        for old, new in _RENAMES:
            key = key.replace(old, new)
        if key.endswith(".attention.qkv.weight"):
            base = key[: -len("qkv.weight")]
            for i, part in enumerate(("to_q", "to_k", "to_v")):
                out[f"{base}{part}.weight"] = row_slice(entry, i, 3)
        else:
            out[key] = entry
    return out


def row_slice(entry: Entry, index: int, parts: int) -> Entry:
    """Rows [index·n/parts, (index+1)·n/parts) of a stored 2-D tensor, as an Entry of its own (a byte range of
    the same file, or a view of a pickle's tensor)."""
    rows = entry.shape[0] // parts
    shape = (rows, *entry.shape[1:])
    if entry.tensor is not None:
        return dataclasses.replace(entry, shape=shape, tensor=entry.tensor[index * rows:(index + 1) * rows])
    size = (entry.end - entry.start) // parts
    start = entry.start + index * size
    return dataclasses.replace(entry, shape=shape, start=start, end=start + size)


def _count(shapes, pattern: str) -> int:
    found = {int(m[1]) for k in shapes if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def build_transformer(entries: dict[str, Entry], config: str | None, shown: str):
    from nodegraph.models.config import parse_config
    from nodegraph.models.z_image_transformer import ZImageTransformer2DModel, ZImageTransformerConfig

    shapes = {k: e.shape for k, e in entries.items()}
    if config:
        raw, where = _component_config(config, "transformer")
    else:
        where = f"the configuration inferred from {shown}"
        raw = _inferred_transformer_config(shapes, shown)
    parsed = parse_config(ZImageTransformerConfig, {"_class_name": "ZImageTransformer2DModel", **raw}, where)
    with torch.device("meta"):
        return ZImageTransformer2DModel(parsed)


def _inferred_transformer_config(shapes, shown: str) -> dict[str, Any]:
    """What the shapes say (widths, depths, heads); the RoPE axes and theta are Z-Image-Turbo's."""
    from nodegraph.models.z_image_transformer import ZImageTransformerConfig

    dim, patch_features = shapes["all_x_embedder.2-1.weight"]
    norm_q = shapes.get("layers.0.attention.norm_q.weight")
    head_dim = norm_q[0] if norm_q else 128
    default = ZImageTransformerConfig()
    if head_dim != sum(default.axes_dims):
        raise CheckpointError(f"{shown}: a Z-Image transformer with {head_dim}-wide heads is not Z-Image-Turbo's "
                              f"layout (128); pass the folder or repo of its diffusers config as `config`.")
    return dict(dim=dim, in_channels=patch_features // 4, n_layers=_count(shapes, r"layers\.(\d+)\."),
                n_refiner_layers=_count(shapes, r"noise_refiner\.(\d+)\."), n_heads=dim // head_dim,
                n_kv_heads=dim // head_dim, qk_norm=norm_q is not None,
                cap_feat_dim=shapes["cap_embedder.1.weight"][1])


def build_text_encoder(shapes: dict[str, tuple[int, ...]], config: str | None, shown: str):
    from nodegraph.models.qwen3_text import build_qwen3

    if config:
        raw, where = _component_config(config, "text_encoder")
        return build_qwen3(raw, where)
    vocab, hidden = shapes["embed_tokens.weight"]
    head_dim = shapes[_QWEN3_KEY][0]
    raw = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=shapes["layers.0.mlp.gate_proj.weight"][0],
               num_hidden_layers=_count(shapes, r"layers\.(\d+)\."), head_dim=head_dim,
               num_attention_heads=shapes["layers.0.self_attn.q_proj.weight"][0] // head_dim,
               num_key_value_heads=shapes["layers.0.self_attn.k_proj.weight"][0] // head_dim,
               rope_theta=1000000.0, rms_norm_eps=1e-6,  # every Qwen3 release
               attention_bias="layers.0.self_attn.q_proj.bias" in shapes)
    return build_qwen3(raw, f"the configuration inferred from {shown}")


def _component_config(config: str, name: str) -> tuple[dict[str, Any], str]:
    from nodegraph.models.sources import resolve_source

    src = resolve_source(config)
    path = f"{name}/config.json" if src.has_folder(name) else "config.json"
    return src.read_json(path), src.where(path)


def flow_file_config(ckpt, name: str) -> dict[str, Any]:
    """`read_config` for these files: the component's config as it would be built (inferred from the shapes)."""
    kind, prefix = detect_flow_file(ckpt.shapes)
    wanted = {"z_image_transformer": "transformer", "qwen3_text_encoder": "text_encoder"}[kind]
    if name != wanted:
        raise CheckpointError(f"{ckpt.path} holds a {FAMILIES[kind]} alone, which has no `{name}`.")
    if kind == "z_image_transformer":
        shapes = {k: e.shape for k, e in transformer_entries(ckpt.entries, prefix).items()}
        return {"_class_name": "ZImageTransformer2DModel", **_inferred_transformer_config(shapes, str(ckpt.path))}
    model = build_text_encoder({k[len(prefix):]: s for k, s in ckpt.shapes.items()}, None, str(ckpt.path))
    return {"architectures": ["Qwen3Model"], "model_type": "qwen3", **dataclasses.asdict(model.config)}


FLOW_COMPONENTS = ("transformer",)


def not_a_flow_file(ckpt, name: str) -> CheckpointError:
    """The error for a file of another family passed as a Z-Image component: what the file is instead."""
    from nodegraph.models.single_file.detect import detect

    try:
        what = f"it is a {detect(ckpt.shapes, str(ckpt.path)).description} checkpoint (use the SD graphs)"
    except CheckpointError as e:
        what = str(e).split(": ", 1)[-1]
    return CheckpointError(f"{ckpt.path} is not a Z-Image {name} (no `{_TRANSFORMER_KEY}` key): {what}")


def describe_flow_file(ckpt, config: str | None) -> dict[str, Any]:
    """`nodegraph inspect` for these files: family, component, storage dtype, parameter count, checked against a
    model built on the meta device (the keys and shapes a load would check)."""
    import math
    from collections import Counter

    from nodegraph.models.checkpoint import fit

    kind, prefix = detect_flow_file(ckpt.shapes)
    shown = str(ckpt.path)
    if kind == "z_image_transformer":
        name, entries = "transformer", transformer_entries(ckpt.entries, prefix)
        model = build_transformer(entries, config, shown)
    else:
        name = "text_encoder"
        entries = {k[len(prefix):]: e for k, e in ckpt.entries.items() if k != "lm_head.weight"}
        model = build_text_encoder({k: e.shape for k, e in entries.items()}, config, shown)
    fitted = fit(entries, model, lambda key: key, f"the {FAMILIES[kind]} of its config")
    dtypes = Counter(str(e.dtype).removeprefix("torch.") for e in fitted.values())
    settings = dataclasses.asdict(model.config)
    transformer = name == "transformer"
    return {"family": kind, "description": FAMILIES[kind],
            "prediction_type": "flow matching (Z-Image)" if transformer else "none: a text encoder",
            "scheduler": "FlowMatchEulerDiscreteScheduler" if transformer else "none",
            "configs": config or "inferred from the shapes",
            "unused_keys": sorted(k for k in ckpt.shapes if k[len(prefix):] in ("norm_final.weight", "lm_head.weight")),
            "components": {name: {
                "tensors": len(fitted), "parameters": sum(math.prod(e.shape) for e in fitted.values()),
                "bytes": sum(math.prod(e.shape) * e.dtype.itemsize for e in fitted.values()),
                "dtype": ", ".join(f"{d} ({n})" if len(dtypes) > 1 else d for d, n in dtypes.most_common()),
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}}}
