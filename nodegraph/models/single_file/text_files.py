"""Text encoders kept as single files, as ComfyUI's `models/text_encoders/` holds them for Flux and SD3:
`clip_l.safetensors` (CLIP-L, transformers' key names: `text_model.…`), `clip_g.safetensors` (bigG with its
`text_projection`), `t5xxl_fp16.safetensors` / `t5xxl_fp8_e4m3fn.safetensors` (T5 v1.1 XXL's encoder,
transformers' names: `shared`, `encoder.block.N.…`; float8 weights stay float8, upcast per layer).

Detected by their keys (no prefix: a checkpoint that carries a text encoder under `cond_stage_model.` or
`text_encoders.` is another layout); configured from `config` (the pipeline folder or repo the graph's `model`
names: its `text_encoder*/config.json`), since heads and activations cannot be read from shapes.
"""

from __future__ import annotations

import torch

from nodegraph.models.errors import CheckpointError

T5_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
CLIP_KEY = "encoder.layers.0.self_attn.q_proj.weight"  # under `text_model.` (transformers 4, ComfyUI) or not (5)
EXTRA_CLIP_KEYS = ("logit_scale", "text_model.embeddings.position_ids")  # in some files, read by no encoder
WHAT = {"t5": "a T5 text encoder (t5xxl)", "clip": "a CLIP text encoder (clip_l / clip_g)"}


ALL_IN_ONE = {"text_encoder": "text_encoders.clip_l.transformer.", "text_encoder_2": "text_encoders.t5xxl.transformer."}


def all_in_one_part(ckpt, name: str):
    """The text encoder `name` of an all-in-one Flux checkpoint (ComfyUI's `text_encoders.clip_l.transformer.` /
    `text_encoders.t5xxl.transformer.` keys) as a file of its own (path, entries, shapes), or None."""
    from types import SimpleNamespace

    prefix = ALL_IN_ONE.get(name)
    if not prefix or not any(k.startswith(prefix) for k in ckpt.shapes):
        return None
    entries = {k[len(prefix):]: e for k, e in ckpt.entries.items() if k.startswith(prefix)}
    return SimpleNamespace(path=ckpt.path, entries=entries, shapes={k: e.shape for k, e in entries.items()})


def detect_text_file(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """"t5" or "clip" for a text encoder kept alone in a file, else None."""
    if T5_KEY in shapes:  # a whole T5's file too: its decoder is skipped
        return "t5"
    if f"text_model.{CLIP_KEY}" in shapes or (CLIP_KEY in shapes and "embeddings.token_embedding.weight" in shapes):
        return "clip"
    return None


def text_file_config(ckpt, name: str, config: str | None) -> dict:
    """`read_config` for these files: the config of component `name` of `config` (required)."""
    kind = detect_text_file(ckpt.shapes)
    _check_slot(ckpt, kind, name)
    if not config:
        raise CheckpointError(f"{ckpt.path} holds {WHAT[kind]} alone; its configuration comes from the pipeline it "
                              f"belongs to: pass that folder or repo as `config` (the graphs pass `model`).")
    from nodegraph.models.loading import read_config

    return read_config(config, name)


def _check_slot(ckpt, kind: str, name: str) -> None:
    if kind == "t5" and name == "text_encoder":
        raise CheckpointError(f"{ckpt.path} holds {WHAT['t5']}, not CLIP: give it as the T5 input (Flux's "
                              f"`text_encoder_2`, SD3's `text_encoder_3`), and a clip_l file as `text_encoder`.")
    if kind == "clip" and name == "text_encoder_3":
        raise CheckpointError(f"{ckpt.path} holds {WHAT['clip']}, not T5: SD3's `text_encoder_3` is T5-XXL "
                              f"(t5xxl_fp16.safetensors).")
    if not name.startswith("text_encoder"):
        raise CheckpointError(f"{ckpt.path} holds {WHAT[kind]} alone, not a `{name}`"
                              + (" (tokenizers are not in such files: pass the pipeline folder or repo)"
                                 if name.startswith("tokenizer") else "") + ".")


def load_text_file(ckpt, name: str, dtype: torch.dtype, device: torch.device, config: str | None,
                   store: str | None = None):
    """The encoder of a text-encoder file, built from `config`'s `name` config and checked key by key."""
    from nodegraph.models.checkpoint import fit

    raw = text_file_config(ckpt, name, config)
    kind = detect_text_file(ckpt.shapes)
    declared = (raw.get("architectures") or [""])[0]
    if (kind == "t5") != (declared == "T5EncoderModel" or raw.get("model_type") == "t5"):
        raise CheckpointError(f"{ckpt.path} holds {WHAT[kind]}, but `{name}` of {config} is a "
                              f"{declared or raw.get('model_type')}: give the file as the other text encoder input.")
    what = f"the {name} of {config}"
    if kind == "t5":
        from nodegraph.models.t5_text import build_t5

        model = build_t5(raw, what)
        entries = {k: e for k, e in ckpt.entries.items() if not k.startswith(("decoder.", "lm_head."))}
        tied = [k for k in ("shared.weight", "encoder.embed_tokens.weight") if k in entries]
        if not tied:
            raise CheckpointError(f"{ckpt.path} has no token embedding (`shared.weight`); is the file complete?")
        entries = {**entries, "shared.weight": entries[tied[0]], "encoder.embed_tokens.weight": entries[tied[0]]}
        fitted = fit(entries, model, lambda key: key, what)
        del fitted["encoder.embed_tokens.weight"]  # the same module as `shared`
        return _install(model, fitted, dtype, device, store)
    from nodegraph.models.text import _materialize_buffers, build_text_encoder

    model = build_text_encoder(raw, what)
    projected = not hasattr(model, "embeddings")  # CLIPTextModelWithProjection keeps `text_model.`
    entries = {}
    for key, entry in ckpt.entries.items():
        if key in EXTRA_CLIP_KEYS or (key == "text_projection.weight" and not projected):
            continue  # ComfyUI's clip_l carries a projection Flux's CLIPTextModel does not use
        bare = key[len("text_model."):] if key.startswith("text_model.") else key
        entries[bare if not projected or key == "text_projection.weight" else f"text_model.{bare}"] = entry
    model = _install(model, fit(entries, model, lambda key: key, what), dtype, device, store)
    _materialize_buffers(model, device)
    return model


def _install(model, fitted: dict, dtype: torch.dtype, device: torch.device, store: str | None):
    """Checked entries into the meta-device model: float8 ones kept float8 (per-layer upcast), others in `dtype`."""
    from nodegraph.models.base import install_weights
    from nodegraph.models.checkpoint import read_tensors

    if store or any(e.dtype.is_floating_point and e.dtype.itemsize == 1 for e in fitted.values()):
        from nodegraph.models.fp8 import install_fp8

        install_fp8(model, fitted, dtype, device, store=store)
    else:
        install_weights(model, read_tensors(fitted, dtype, device))
    return model.eval()
