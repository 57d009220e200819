"""Stable Diffusion 3 / 3.5 single files as Stability AI and ComfyUI ship them: the all-in-one
`sd3.5_large.safetensors` / `sd3.5_medium.safetensors` (`model.diffusion_model.` transformer, `first_stage_model.`
VAE, with or without `text_encoders.{clip_l,clip_g,t5xxl}.transformer.` encoders) and the transformer alone
(ComfyUI's `diffusion_models/`, no prefix), read into nodegraph's models under diffusers' names.

Detection is by key and shape, as diffusers' `infer_diffusers_model_type`:
`joint_blocks.0.context_block.adaLN_modulation.1.bias` marks SD3; 38 blocks are SD3.5 Large, a 384² position
table SD3.5 Medium, a 192² one with 24 blocks SD3 Medium. The renames are those of diffusers'
`convert_sd3_transformer_checkpoint_to_diffusers`: fused `qkv` projections split by rows (byte ranges of the
mapped file), `ln_q`/`ln_k` → the QK-norms, and the (shift, scale) halves of the last context block's and the
final layer's modulation swapped into diffusers' (scale, shift). The text encoders are stored under
transformers' own names behind their prefix. Tokenizers, the scheduler and the configs are never in the file:
they come from `config` (a diffusers SD3 folder or repo; by default the hub repo of the detected model), and so
do the text encoders a file leaves out.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from nodegraph.models.checkpoint import Entry
from nodegraph.models.errors import CheckpointError

PREFIXES = ("model.diffusion_model.", "")
DETECTION_KEY = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
VAE_PREFIX = "first_stage_model."
TEXT_PREFIXES = {"text_encoder": "text_encoders.clip_l.transformer.",
                 "text_encoder_2": "text_encoders.clip_g.transformer.",
                 "text_encoder_3": "text_encoders.t5xxl.transformer."}
HUB_REPOS = {"SD3.5 Large": "stabilityai/stable-diffusion-3.5-large",
             "SD3.5 Medium": "stabilityai/stable-diffusion-3.5-medium",
             "SD3 Medium": "stabilityai/stable-diffusion-3-medium-diffusers"}
_PLAIN = {  # SAI name → diffusers name (whole tensors)
    "x_embedder.proj": "pos_embed.proj", "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
    "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
    "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
    "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
    "context_embedder": "context_embedder", "final_layer.linear": "proj_out",
}
_BLOCK = {  # inside joint_blocks.N. → transformer_blocks.N.
    "x_block.attn.ln_q": "attn.norm_q", "x_block.attn.ln_k": "attn.norm_k", "x_block.attn.proj": "attn.to_out.0",
    "context_block.attn.ln_q": "attn.norm_added_q", "context_block.attn.ln_k": "attn.norm_added_k",
    "context_block.attn.proj": "attn.to_add_out",
    "x_block.attn2.ln_q": "attn2.norm_q", "x_block.attn2.ln_k": "attn2.norm_k", "x_block.attn2.proj": "attn2.to_out.0",
    "x_block.adaLN_modulation.1": "norm1.linear", "context_block.adaLN_modulation.1": "norm1_context.linear",
    "x_block.mlp.fc1": "ff.net.0.proj", "x_block.mlp.fc2": "ff.net.2",
    "context_block.mlp.fc1": "ff_context.net.0.proj", "context_block.mlp.fc2": "ff_context.net.2",
}
_FUSED = {"x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
          "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
          "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v")}


def detect_sd3_file(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The key prefix of an SD3-layout transformer in the file, or None for any other file."""
    return next((p for p in PREFIXES if p + DETECTION_KEY in shapes), None)


def sd3_variant(shapes: dict[str, tuple[int, ...]], prefix: str) -> str:
    """"SD3.5 Large", "SD3.5 Medium" or "SD3 Medium" (diffusers' `infer_diffusers_model_type` rules), else "SD3"."""
    if prefix + "joint_blocks.37.x_block.mlp.fc1.weight" in shapes:
        return "SD3.5 Large"
    table = shapes.get(prefix + "pos_embed", (0, 0))[1]
    return {147456: "SD3.5 Medium", 36864: "SD3 Medium"}.get(table, "SD3")


def _row_part(entry: Entry, index: int, parts: int) -> Entry:
    """Rows [index·n/parts, (index+1)·n/parts) of a stored tensor as an Entry of its own (a byte range of the same
    file, or a view of a loaded tensor)."""
    rows = entry.shape[0] // parts
    shape = (rows, *entry.shape[1:])
    if entry.tensor is not None:
        return dataclasses.replace(entry, shape=shape, tensor=entry.tensor[index * rows:(index + 1) * rows])
    size = (entry.end - entry.start) // parts
    start = entry.start + index * size
    return dataclasses.replace(entry, shape=shape, start=start, end=start + size)


def _swapped(entry: Entry) -> Entry:
    """(shift, scale) → (scale, shift): the one tensor read now (a (2·D, D) matrix or its (2·D,) bias)."""
    from nodegraph.models.checkpoint import read_tensors

    tensor = read_tensors({"t": entry}, entry.dtype, torch.device("cpu"))["t"]
    first, second = tensor.chunk(2, dim=0)
    return dataclasses.replace(entry, local=None, start=0, end=0, tensor=torch.cat([second, first]))


def transformer_entries(entries: dict[str, Entry], prefix: str) -> dict[str, Entry]:
    """The transformer's tensors under diffusers' names; keys the renames do not know are kept as they are (under
    the file's name), so the strict load names them."""
    keys = [k[len(prefix):] for k in entries if k.startswith(prefix)]
    last = max(int(m[1]) for k in keys if (m := re.match(r"joint_blocks\.(\d+)\.", k)))
    out: dict[str, Entry] = {}
    for key in keys:
        entry = entries[prefix + key]
        stem, _, suffix = key.rpartition(".")
        if key == "pos_embed":
            out["pos_embed.pos_embed"] = entry
        elif stem in _PLAIN:
            out[f"{_PLAIN[stem]}.{suffix}"] = entry
        elif stem == "final_layer.adaLN_modulation.1":
            out[f"norm_out.linear.{suffix}"] = _swapped(entry)
        elif m := re.fullmatch(r"joint_blocks\.(\d+)\.(.+)", stem):
            block, part = f"transformer_blocks.{m[1]}.", m[2]
            if part in _FUSED:
                for i, name in enumerate(_FUSED[part]):
                    out[f"{block}{name}.{suffix}"] = _row_part(entry, i, 3)
            elif part == "context_block.adaLN_modulation.1" and int(m[1]) == last:
                out[f"{block}norm1_context.linear.{suffix}"] = _swapped(entry)
            else:
                out[f"{block}{_BLOCK.get(part, part)}.{suffix}"] = entry
        else:
            out[prefix + key] = entry
    return out


def _count(shapes, pattern: str) -> list[int]:
    return sorted({int(m[1]) for k in shapes if (m := re.match(pattern, k))})


def inferred_transformer_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """diffusers' config.json values the shapes (diffusers' names) tell; SD3's 64-wide heads, sample size 128."""
    dim, in_channels, patch, _ = shapes["pos_embed.proj.weight"]
    head_dim = 64  # every SD3 / SD3.5 release; the heads are not stored apart
    return dict(_class_name="SD3Transformer2DModel", sample_size=128, patch_size=patch, in_channels=in_channels,
                out_channels=shapes["proj_out.weight"][0] // patch ** 2,
                num_layers=len(_count(shapes, r"transformer_blocks\.(\d+)\.")),
                attention_head_dim=head_dim, num_attention_heads=dim // head_dim,
                joint_attention_dim=shapes["context_embedder.weight"][1], caption_projection_dim=dim,
                pooled_projection_dim=shapes["time_text_embed.text_embedder.linear_1.weight"][1],
                pos_embed_max_size=round(shapes["pos_embed.pos_embed"][1] ** 0.5),
                dual_attention_layers=_count(shapes, r"transformer_blocks\.(\d+)\.attn2\."),
                qk_norm="rms_norm" if "transformer_blocks.0.attn.norm_q.weight" in shapes else None)


def config_source(ckpt, config: str | None) -> str:
    """Where the configs, tokenizers, scheduler and missing components come from: `config`, or the hub repo of
    the detected model."""
    if config:
        return config
    variant = sd3_variant(ckpt.shapes, detect_sd3_file(ckpt.shapes))
    if variant not in HUB_REPOS:
        raise CheckpointError(f"{ckpt.path} is an SD3 transformer of an unknown size; pass the diffusers folder or "
                              f"repo it belongs to as `config`.")
    return HUB_REPOS[variant]


def sd3_file_config(ckpt, name: str, config: str | None) -> dict[str, Any]:
    """`read_config` for an SD3 file: the transformer's from the shapes (or `config`), the rest from `config`."""
    from nodegraph.models.loading import read_config

    if name == "transformer" and not config:
        entries = transformer_entries(ckpt.entries, detect_sd3_file(ckpt.shapes))
        return inferred_transformer_config({k: e.shape for k, e in entries.items()})
    return read_config(config_source(ckpt, config), name)


def load_sd3_file(ckpt, name: str, dtype: torch.dtype, device: torch.device, config: str | None,
                  store: str | None = None):
    """Component `name` of an SD3 file (a `CheckpointFile`): the transformer, the VAE and the text encoders from
    the file where it holds them, everything else (tokenizers, scheduler, left-out encoders) from `config`."""
    from nodegraph.models.loading import load_component

    if name == "transformer":
        return _load_transformer(ckpt, dtype, device, config, store)
    shown, source = str(ckpt.path), config_source(ckpt, config)
    if name == "vae" and any(k.startswith(VAE_PREFIX) for k in ckpt.shapes):
        return _load_vae(ckpt, source, dtype, device)
    if name in TEXT_PREFIXES and any(k.startswith(TEXT_PREFIXES[name]) for k in ckpt.shapes):
        return _load_text_encoder(ckpt, name, source, dtype, device)
    if name not in ("vae", "scheduler", *TEXT_PREFIXES, *(t.replace("text_encoder", "tokenizer")
                                                          for t in TEXT_PREFIXES)):
        raise CheckpointError(f"{shown} is an SD3 checkpoint, which has no component `{name}`.")
    try:
        return load_component(source, name, dtype=dtype, device=device)
    except CheckpointError as exc:
        raise CheckpointError(f"{shown} holds no `{name}`, so it is read from {source!r}, which failed: {exc} "
                              f"(pass the SD3 diffusers folder or repo the file belongs to as `config`)") from None


def _load_transformer(ckpt, dtype, device, config: str | None, store: str | None):
    from nodegraph.models.config import parse_config
    from nodegraph.models.sd3_transformer import SD3Transformer2DModel, SD3TransformerConfig
    from nodegraph.models.single_file.z_image import _component_config, install

    shown = str(ckpt.path)
    entries = transformer_entries(ckpt.entries, detect_sd3_file(ckpt.shapes))
    if config:
        raw, where = _component_config(config, "transformer")
    else:
        raw, where = inferred_transformer_config({k: e.shape for k, e in entries.items()}), \
            f"the configuration inferred from {shown}"
    with torch.device("meta"):
        model = SD3Transformer2DModel(parse_config(SD3TransformerConfig, raw, where))
    return install(model, entries, dtype, device, "the SD3 transformer of its config", store)


def _load_vae(ckpt, source: str, dtype, device):
    from nodegraph.models.base import install_weights
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file import ldm_vae
    from nodegraph.models.single_file.loader import _build
    from nodegraph.models.single_file.plan import check, read

    shown = str(ckpt.path)
    model = _build("AutoencoderKL", read_config(source, "vae"), f"the VAE config of {source}")
    keys = [k for k in ckpt.shapes if k.startswith(VAE_PREFIX)]
    plan = ldm_vae.plan_vae(keys, VAE_PREFIX, len(model.config.block_out_channels))
    check(plan, keys, ckpt.shapes, model, "the AutoencoderKL of its config", shown)
    install_weights(model, read(plan, ckpt.entries, model, dtype, device))
    return model.eval()


def _load_text_encoder(ckpt, name: str, source: str, dtype, device):
    """CLIP-L, bigG (transformers' names, `text_model.` kept) or T5 (its tied embedding under one name or both)."""
    from nodegraph.models.checkpoint import fit
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file.text_files import _install

    prefix, shown = TEXT_PREFIXES[name], str(ckpt.path)
    raw = read_config(source, name)
    entries = {k[len(prefix):]: e for k, e in ckpt.entries.items() if k.startswith(prefix)}
    what = f"the {name} of {source}"
    if name == "text_encoder_3":
        from nodegraph.models.t5_text import build_t5

        model = build_t5(raw, what)
        tied = entries.get("shared.weight") or entries.get("encoder.embed_tokens.weight")
        if tied is not None:  # one tensor under both names, as the model holds it
            entries = {**entries, "shared.weight": tied, "encoder.embed_tokens.weight": tied}
        fitted = fit(entries, model, lambda k: k, f"{what} (in {shown})")
        del fitted["encoder.embed_tokens.weight"]  # the same module as `shared`
        return _install(model, fitted, dtype, device, None)  # float8 (scaled or not) kept, upcast per layer
    from nodegraph.models.text import _materialize_buffers, _strip_prefix, build_text_encoder

    model = build_text_encoder(raw, what)
    rename = _strip_prefix if hasattr(model, "embeddings") else (lambda key: key)
    _install(model, fit(entries, model, rename, f"{what} (in {shown})"), dtype, device, None)
    _materialize_buffers(model, device)
    return model.eval()


def describe_sd3_file(ckpt, config: str | None) -> dict[str, Any]:
    """`nodegraph inspect` for an SD3 file: the model, which components the file holds (tensors, parameters,
    storage dtype each), the transformer checked against a model built on the meta device from its config."""
    import math
    from collections import Counter

    from nodegraph.models.checkpoint import fit
    from nodegraph.models.config import parse_config
    from nodegraph.models.sd3_transformer import SD3Transformer2DModel, SD3TransformerConfig
    from nodegraph.models.single_file.z_image import _component_config

    prefix, shown = detect_sd3_file(ckpt.shapes), str(ckpt.path)
    entries = transformer_entries(ckpt.entries, prefix)
    if config:
        raw, where = _component_config(config, "transformer")
    else:
        raw = inferred_transformer_config({k: e.shape for k, e in entries.items()})
        where = f"the configuration inferred from {shown}"
    with torch.device("meta"):
        model = SD3Transformer2DModel(parse_config(SD3TransformerConfig, raw, where))
    parts = {"transformer": fit(entries, model, lambda key: key, "the SD3 transformer of its config")}
    for name, part_prefix in (("vae", VAE_PREFIX), *TEXT_PREFIXES.items()):
        held = {k: e for k, e in ckpt.entries.items() if k.startswith(part_prefix)}
        if held:
            parts[name] = held
    variant = sd3_variant(ckpt.shapes, prefix)

    def facts(found: dict[str, Entry]) -> dict[str, Any]:
        dtypes = Counter(str(e.dtype).removeprefix("torch.") for e in found.values())
        return {"tensors": len(found), "parameters": sum(math.prod(e.shape) for e in found.values()),
                "bytes": sum(math.prod(e.shape) * e.dtype.itemsize for e in found.values()),
                "dtype": ", ".join(f"{d} ({n})" if len(dtypes) > 1 else d for d, n in dtypes.most_common()),
                "config": {k: v for k, v in raw.items() if not k.startswith("_")} if found is parts["transformer"]
                else {}}

    layout = "all-in-one" if len(parts) > 1 else "the transformer alone"
    return {"family": variant.lower().replace(" ", "-"), "description": f"{variant} ({layout})",
            "prediction_type": "flow matching (SD3)", "scheduler": "FlowMatchEulerDiscreteScheduler",
            "configs": config or f"transformer inferred from the shapes; the rest from {HUB_REPOS.get(variant)}",
            "unused_keys": [], "components": {name: facts(found) for name, found in parts.items()}}
