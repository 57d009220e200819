"""`load_component`: one entry point for every component of a diffusers-format pipeline.

Layouts: a pipeline folder (`model_index.json` + one subfolder per component), a flat folder (old google/ddpm-*
repos: the component's files at the root), or a single component's folder. Sources: local folders, hub repos
(`org/name`, through huggingface_hub's cache) and `builtin:<name>`. Models are built on the meta device, so no
time goes into random initialisation, and take their weights straight in the requested dtype and device.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from nodegraph.models.autoencoder_kl import AutoencoderKL
from nodegraph.models.base import install_weights
from nodegraph.models.checkpoint import (DIFFUSERS_WEIGHTS, default_dtype, find_weights, fit, legacy_attention_name,
                                         read_entries, read_tensors)
from nodegraph.models.config import AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConfig, parse_config
from nodegraph.models.errors import CheckpointError
from nodegraph.models.flux_transformer import FluxTransformer2DModel, FluxTransformerConfig
from nodegraph.models.qwen3_text import (QWEN3_ENCODERS, is_qwen3_config, is_qwen_tokenizer, load_qwen3_text_encoder,
                                         load_qwen_tokenizer)
from nodegraph.models.sd3_transformer import SD3Transformer2DModel, SD3TransformerConfig
from nodegraph.models.sources import Source, resolve_source
from nodegraph.models.t5_text import T5_ENCODERS, load_t5_encoder
from nodegraph.models.t5_tokenizer import is_t5_tokenizer, load_t5_tokenizer
from nodegraph.models.text import TEXT_ENCODERS, TOKENIZERS, load_text_encoder, load_tokenizer
from nodegraph.models.unet_2d import UNet2DModel
from nodegraph.models.unet_2d_condition import UNet2DConditionModel
from nodegraph.models.weight_files import locate_component
from nodegraph.models.z_image_transformer import ZImageTransformer2DModel, ZImageTransformerConfig

__all__ = ["CheckpointError", "load_component", "read_config", "resolve_source", "Source", "MODELS"]

MODELS = {  # diffusers class name → (nodegraph model, its config)
    "UNet2DModel": (UNet2DModel, UNet2DConfig),
    "UNet2DConditionModel": (UNet2DConditionModel, UNet2DConditionConfig),
    "AutoencoderKL": (AutoencoderKL, AutoencoderKLConfig),
    "ZImageTransformer2DModel": (ZImageTransformer2DModel, ZImageTransformerConfig),
    "FluxTransformer2DModel": (FluxTransformer2DModel, FluxTransformerConfig),
    "SD3Transformer2DModel": (SD3Transformer2DModel, SD3TransformerConfig),
}
ENCODERS = {**dict.fromkeys(TEXT_ENCODERS, load_text_encoder), **dict.fromkeys(QWEN3_ENCODERS, load_qwen3_text_encoder),
            **dict.fromkeys(T5_ENCODERS, load_t5_encoder)}  # transformers class name → its loader
# What the conventional component names must hold, so that `vae` pointing at a UNet fails early and clearly.
EXPECTED = {"unet": ("UNet2DModel", "UNet2DConditionModel"), "vae": ("AutoencoderKL",),
            "text_encoder": TEXT_ENCODERS + QWEN3_ENCODERS,
            "text_encoder_2": TEXT_ENCODERS + T5_ENCODERS, "text_encoder_3": T5_ENCODERS,  # Flux's / SD3's T5
            "transformer": ("ZImageTransformer2DModel", "FluxTransformer2DModel", "SD3Transformer2DModel")}


def load_component(source: str | os.PathLike | Source, name: str, *, dtype: torch.dtype | str = torch.float32,
                   device: torch.device | str = "cpu", revision: str | None = None, variant: str | None = None,
                   allow_pickle: bool = False, channels_last: bool = False, config: str | None = None,
                   ema: bool = False, weights: str | None = None, stream: bool = False,
                   partial: bool = False) -> Any:
    """Load component `name` ("unet", "vae", "text_encoder", "tokenizer", "scheduler", …) of `source`.

    Returns a model in eval mode with gradients off (UNet2DModel, UNet2DConditionModel, AutoencoderKL, or the
    CLIPTextModel / CLIPTextModelWithProjection of clip_text.py: transformers' module tree), a CLIPTokenizer, or
    for a scheduler the dict of scheduler_config.json as written.
    `source`: a folder, `org/name` on the hub, `builtin:<name>`, or a `Source` from `resolve_source` (reuse one
    to list a hub repo once for several components). `dtype` (a torch dtype or "fp16", "bf16", …) applies to
    floating-point weights; `revision` to hub repos only; `variant` picks `<weights>.<variant>.safetensors`
    (e.g. "fp16") and is an error where absent; `allow_pickle` permits `.bin` weights; `channels_last` stores
    the conv kernels of a UNet or VAE channels-last, which makes oneDNN's CPU convolutions faster (and their
    activations follow), at a last-bits difference in the results.
    `source` may also be one single-file checkpoint (`.safetensors`, or with `allow_pickle` `.ckpt`) in the
    original LDM/SGM layout; `config` (a diffusers folder or hub repo) then overrides its built-in configs,
    tokenizers and scheduler, and `ema` reads its UNet's EMA copy (see nodegraph.models.single_file).
    Linear/Conv weights a folder's file stores as float8 stay float8, upcast per layer at call time;
    `weights="fp8_e4m3fn"` (or "fp8_e5m2") stores a wider file's that way too (nodegraph.models.fp8).
    `stream=True` (CPU, UNets and VAEs of a folder) keeps the weights in the memory-mapped file and gives each
    block's pages back after it runs: the same numbers in about one block's memory (nodegraph.models.streaming).
    `partial=True` (CPU, a folder's model that names blocks for it: Z-Image's transformer) reads a share of its
    blocks' weights from the file at each call instead of holding them (nodegraph.models.partial_residency).
    Every failure is a `CheckpointError` that names the file.
    """
    from nodegraph.models.single_file import is_single_file, load_single_file

    if is_single_file(source):
        return load_single_file(source, name, dtype=default_dtype(dtype), device=device, config=config or None,
                                allow_pickle=allow_pickle, channels_last=channels_last, ema=ema, weights=weights)
    if ema:
        raise CheckpointError(f"`ema` applies to single-file checkpoints; {source} is not a file (a diffusers "
                              f"folder holds one set of UNet weights).")
    src = resolve_source(source, revision)
    folder, declared = locate_component(src, name)
    join = (lambda n: f"{folder}/{n}") if folder else (lambda n: n)
    if name == "scheduler" or declared.endswith("Scheduler"):
        return src.read_json(join("scheduler_config.json"))
    if name.startswith("tokenizer") and is_qwen_tokenizer(src, folder, declared):
        return load_qwen_tokenizer(src, folder)
    if name.startswith("tokenizer") and is_t5_tokenizer(src, folder, declared):
        return load_t5_tokenizer(src, folder)
    if name.startswith("tokenizer") or declared in TOKENIZERS:
        return load_tokenizer(src, folder)

    raw = src.read_json(join("config.json"))
    kind = raw.get("_class_name") or (raw.get("architectures") or [None])[0] or \
        {"clip_text_model": "CLIPTextModel", "t5": "T5EncoderModel"}.get(raw.get("model_type"))
    where = src.where(join("config.json"))
    if is_qwen3_config(raw) and kind in QWEN3_ENCODERS + (None,):  # Z-Image declares Qwen3Model for a causal-LM folder
        kind = declared if declared in QWEN3_ENCODERS else "Qwen3Model"
    if declared and kind != declared:
        raise CheckpointError(f"model_index.json declares `{name}` a {declared}, but {where} describes a {kind}.")
    if name in EXPECTED and kind not in EXPECTED[name]:
        raise CheckpointError(f"{where} describes a {kind}, but component `{name}` must be "
                              f"{' or '.join(EXPECTED[name])}: is this the right folder?")
    dtype, device = default_dtype(dtype), torch.device(device)
    if weights:
        from nodegraph.models.fp8 import cast_to_fp8, check_fp8

        check_fp8(device, weights)
    if kind in ENCODERS:
        encoder = ENCODERS[kind](src, folder, raw, dtype, device, variant, allow_pickle)
        return cast_to_fp8(encoder, weights) if weights else encoder
    if kind not in MODELS:
        raise CheckpointError(f"{where}: nodegraph cannot load a {kind}; it loads "
                              f"{', '.join([*MODELS, *ENCODERS])}.")
    model_class, config_class = MODELS[kind]
    config = parse_config(config_class, raw, where)
    with torch.device("meta"):
        model = model_class(config)
    files = find_weights(src, folder, DIFFUSERS_WEIGHTS, variant, allow_pickle)
    fitted = fit(read_entries(src, files), model, legacy_attention_name, f"the {kind} of {where}")
    _install(model, fitted, dtype, device, channels_last, weights, stream, partial)
    return model.eval()


def _install(model, fitted: dict, dtype: torch.dtype, device: torch.device, channels_last: bool,
             weights: str | None, stream: bool, partial: bool = False) -> None:
    """The checked entries into the meta-device model: streamed from the file, as float8 where the file has
    float8 (or `weights` asks for it), or read whole in `dtype`."""
    if stream:
        from nodegraph.models.streaming import install_streamed

        install_streamed(model, fitted, dtype, device)
    elif weights or any(e.dtype.itemsize == 1 and e.dtype.is_floating_point for e in fitted.values()):
        from nodegraph.models.fp8 import install_fp8

        install_fp8(model, fitted, dtype, device, store=weights)
    elif partial and device.type == "cpu" and not channels_last and hasattr(model, "file_read_blocks"):
        from nodegraph.models.partial_residency import install_partial

        install_partial(model, fitted, dtype, device, model.file_read_blocks())
    else:
        install_weights(model, read_tensors(fitted, dtype, device, channels_last=channels_last))


def read_config(source: str | os.PathLike | Source, name: str, revision: str | None = None) -> dict[str, Any]:
    """Component `name`'s config.json (scheduler_config.json for a scheduler) as written, without loading weights;
    `name` "model_index" gives model_index.json ({} when the source has none). A single-file checkpoint gives its
    family's built-in configs."""
    from nodegraph.models.single_file import is_single_file, read_single_file_config

    if is_single_file(source):
        return read_single_file_config(source, name)
    src = resolve_source(source, revision)
    if name == "model_index":
        return src.read_json("model_index.json") if "model_index.json" in src.files("") else {}
    folder, declared = locate_component(src, name)
    file = "scheduler_config.json" if name == "scheduler" or declared.endswith("Scheduler") else "config.json"
    return src.read_json(f"{folder}/{file}" if folder else file)

