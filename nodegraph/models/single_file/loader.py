"""Load one component of a single-file checkpoint into nodegraph's models.

The family is detected from the file's keys; the component's config comes from `config` (a diffusers folder or
hub repo: its `<component>/config.json`, tokenizer and scheduler, as diffusers' `from_single_file(config=...)`)
or else from the family's built-in config (`configs/<family>.json`). The model is built on the meta device, the
remap plan is checked against it, and its tensors are taken from the memory-mapped file.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from nodegraph.models.base import install_weights
from nodegraph.models.checkpoint import default_dtype
from nodegraph.models.errors import CheckpointError
from nodegraph.models.single_file import clip, ldm_unet, ldm_vae
from nodegraph.models.single_file.detect import VAE_PREFIXES, Family, detect, top_prefixes
from nodegraph.models.single_file.flux import detect_flux_file, flux_file_config, load_flux_file
from nodegraph.models.single_file.plan import Plan, Take, check, read
from nodegraph.models.single_file.reader import PICKLES, CheckpointFile, open_checkpoint
from nodegraph.models.single_file.sd3 import detect_sd3_file, load_sd3_file, sd3_file_config
from nodegraph.models.single_file.text_files import detect_text_file, load_text_file, text_file_config
from nodegraph.models.single_file.z_image import (FLOW_COMPONENTS, detect_flow_file, flow_file_config, load_flow_file,
                                                  not_a_flow_file)

CONFIGS = Path(__file__).parent / "configs"
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
# diffusers' legacy rule for SD2 (single_file_utils): the 512 ε model was saved at this step; the rest are v.
SD2_EPSILON_STEP = 875000
# Scheduler tables some real files carry (the LDM's diffusion buffers), read by no model.
LDM_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
               "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
               "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
               "posterior_mean_coef1", "posterior_mean_coef2", "model_ema.decay", "model_ema.num_updates")


def is_single_file(source: Any) -> bool:
    if not isinstance(source, (str, os.PathLike)):
        return False
    text = os.fspath(source)
    return not text.startswith("builtin:") and Path(text).expanduser().is_file()


@lru_cache(maxsize=8)
def _opened(path: str, size: int, mtime_ns: int, allow_pickle: bool) -> CheckpointFile:
    return open_checkpoint(path, allow_pickle)


def opened(path: str | os.PathLike, allow_pickle: bool = False) -> CheckpointFile:
    """The file's tensor index, parsed once per process while the file is unchanged. Pickles are not kept: their
    index holds the tensors themselves (all of them, for the pre-zip format), which must not outlive the load."""
    p = Path(path).expanduser().resolve()
    try:
        stat = p.stat()
    except OSError:
        raise CheckpointError(f"no such file: {p}") from None
    if p.suffix.lower() in PICKLES:
        return open_checkpoint(p, allow_pickle)
    return _opened(str(p), stat.st_size, stat.st_mtime_ns, allow_pickle)


def builtin_config(family_name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{family_name}.json").read_text())


def load_single_file(path: str | os.PathLike, name: str, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu", config: str | None = None, allow_pickle: bool = False,
                     channels_last: bool = False, ema: bool = False, weights: str | None = None) -> Any:
    """Component `name` of the single-file checkpoint at `path` (see `load_component` for what is returned);
    `weights` (float8 storage) is read for Z-Image files only."""
    ckpt = opened(path, allow_pickle)
    shown = str(ckpt.path)
    if detect_flux_file(ckpt.shapes) is not None:  # a Flux.1 transformer in BFL's layout
        return load_flux_file(ckpt, name, dtype, torch.device(device), config, store=weights)
    if detect_sd3_file(ckpt.shapes) is not None:  # an SD3 / SD3.5 file (all-in-one, or the transformer alone)
        return load_sd3_file(ckpt, name, dtype, torch.device(device), config, store=weights)
    if detect_text_file(ckpt.shapes):  # ComfyUI's text_encoders/ (clip_l, clip_g, t5xxl)
        return load_text_file(ckpt, name, dtype, torch.device(device), config, store=weights)
    if detect_flow_file(ckpt.shapes):  # a Z-Image transformer or Qwen3 text encoder alone
        return load_flow_file(ckpt, name, dtype, torch.device(device), config, store=weights)
    if name in FLOW_COMPONENTS:
        raise not_a_flow_file(ckpt, name)
    if name not in COMPONENTS:
        raise CheckpointError(f"a single-file checkpoint has no component `{name}`; it holds "
                              f"{', '.join(COMPONENTS)} (those its family uses).")
    if name == "vae" and _is_vae_only(ckpt):
        return load_vae_file(path, _config_source(config, "vae") if config else builtin_config("sd1")["vae"],
                             dtype=dtype, device=device, allow_pickle=allow_pickle, channels_last=channels_last)
    fam = detect(ckpt.shapes, shown)
    encoder = name.replace("tokenizer", "text_encoder")
    if encoder.startswith("text_encoder") and not any(t.component == encoder for t in fam.text_encoders):
        raise CheckpointError(f"{shown} is a {fam.description} checkpoint, which has no `{name}`.")
    if name == "scheduler":
        return scheduler_config(ckpt, fam, config)
    if name.startswith("tokenizer"):
        return _tokenizer(fam, name, config)
    if name == "vae" and not any(k.startswith(VAE_PREFIXES) for k in ckpt.shapes):
        raise CheckpointError(f"{shown} holds no VAE (no first_stage_model.* keys); pass one as `vae`.")
    raw = _config_source(config, name) if config else builtin_config(fam.config)[name]
    if ema and name == "unet" and sum(k.startswith("model_ema.") for k in ckpt.shapes) <= 100:
        raise CheckpointError(f"{shown} holds no EMA weights (no model_ema.* keys); load it without `ema`.")
    return _load_model(ckpt, fam, name, raw, dtype, torch.device(device), channels_last, ema)


def read_single_file_config(path: str | os.PathLike, name: str, config: str | None = None) -> dict[str, Any]:
    """Component `name`'s config as `read_config` gives it for a folder ("model_index": the pipeline settings),
    from `config` or the built-in configs of the file's family; no weights are read."""
    if config:
        from nodegraph.models.loading import read_config

        return read_config(config, name)
    ckpt = opened(path)
    if detect_flux_file(ckpt.shapes) is not None:
        return flux_file_config(ckpt, name)
    if detect_sd3_file(ckpt.shapes) is not None:
        return sd3_file_config(ckpt, name, None)
    if detect_text_file(ckpt.shapes):
        return text_file_config(ckpt, name, config)
    if detect_flow_file(ckpt.shapes):
        return flow_file_config(ckpt, name)
    fam = detect(ckpt.shapes, str(ckpt.path))
    builtin = builtin_config(fam.config)
    if name == "scheduler":
        return scheduler_config(ckpt, fam, None)
    if name == "model_index":
        return builtin.get("model_index", {})
    if name not in builtin:
        raise CheckpointError(f"{ckpt.path} is a {fam.description} checkpoint, which has no `{name}`.")
    return builtin[name]


def check_all(shapes: dict[str, tuple[int, ...]], shown: str, config: str | None = None) -> set[str]:
    """Check every model component of a checkpoint (given by its keys and shapes only) against models built on
    the meta device from its configs; returns the keys read or deliberately left unused. Raises CheckpointError
    like a load would. Used by `nodegraph inspect` and by the tests on real key lists."""
    fam = detect(shapes, shown)
    configs = builtin_config(fam.config)
    accounted = {k for k in shapes if k in LDM_BUFFERS or k.startswith("model_ema.")}
    for name in ("unet", "vae", *(t.component for t in fam.text_encoders)):
        raw = _config_source(config, name) if config else configs[name]
        model, plan, claimed, ignored = _meta_plan(shapes, fam, name, raw, shown)
        check(plan, [k for k in claimed if k not in set(ignored)], shapes, model, f"the {name} of its config", shown)
        accounted |= {t.key for t in plan.values()} | set(ignored)
    return accounted


def _meta_plan(shapes, fam: Family, name: str, raw: dict[str, Any], shown: str, ema: bool = False):
    """(meta model, plan, keys of the component, keys deliberately unused) for model component `name`."""
    keys = list(shapes)
    if name == "unet":
        model = _build(raw.get("_class_name", "UNet2DConditionModel"), raw, f"the UNet config of {shown}")
        plan, ignored = ldm_unet.plan_unet(keys, _layers_per_block(raw, shown), ema)
        return model, plan, [k for k in keys if k.startswith("model_ema." if ema else ldm_unet.PREFIX)], ignored
    if name == "vae":
        prefix = next((p for p in VAE_PREFIXES if any(k.startswith(p) for k in keys)), VAE_PREFIXES[0])
        model = _build("AutoencoderKL", raw, f"the VAE config of {shown}")
        plan = ldm_vae.plan_vae(keys, prefix, len(model.config.block_out_channels))
        return model, plan, [k for k in keys if k.startswith(prefix)], []
    layout = next(t for t in fam.text_encoders if t.component == name)
    model = _text_model(raw, f"the {name} config of {shown}")
    plan, ignored = _text_plan(shapes, layout, raw)
    if hasattr(model, "text_model"):  # WithProjection still wraps the tower in `text_model`
        plan = {k if k.startswith("text_projection") else f"text_model.{k}": t for k, t in plan.items()}
    return model, plan, [k for k in keys if k.startswith(layout.prefix)], ignored


def _layers_per_block(raw: dict[str, Any], shown: str) -> int:
    lpb = raw.get("layers_per_block", 2)
    if not isinstance(lpb, int):
        raise CheckpointError(f"{shown}: a UNet config with per-block `layers_per_block` ({lpb}) cannot be "
                              f"read from the original layout.")
    return lpb


def _build(kind: str, raw: dict[str, Any], where: str):
    from nodegraph.models.config import parse_config
    from nodegraph.models.loading import MODELS

    model_class, config_class = MODELS[kind]
    config = parse_config(config_class, raw, where)
    with torch.device("meta"):
        return model_class(config)


def _load_model(ckpt: CheckpointFile, fam: Family, name: str, raw, dtype, device, channels_last=False, ema=False):
    shown = str(ckpt.path)
    model, plan, claimed, ignored = _meta_plan(ckpt.shapes, fam, name, raw, shown, ema)
    ignored_set = set(ignored)
    check(plan, [k for k in claimed if k not in ignored_set and k not in LDM_BUFFERS], ckpt.shapes, model,
          f"the {name} of its config", shown)
    install_weights(model, read(plan, ckpt.entries, model, dtype, device, channels_last and name in ("unet", "vae")))
    if name.startswith("text_encoder"):
        from nodegraph.models.text import _materialize_buffers

        _materialize_buffers(getattr(model, "text_model", model), device)
    return model.eval()


def _vae_only_prefix(ckpt: CheckpointFile) -> str | None:
    """The prefix of a VAE-only file's keys ("" or a checkpoint's `first_stage_model.`/`vae.`), None otherwise."""
    keys = [k for k in ckpt.shapes if k not in LDM_BUFFERS]
    for prefix in ("", *VAE_PREFIXES):
        parts = tuple(prefix + p for p in ("encoder.", "decoder.", "quant_conv.", "post_quant_conv."))
        if keys and all(k.startswith(parts) for k in keys):
            return prefix
    return None


def _is_vae_only(ckpt: CheckpointFile) -> bool:
    return _vae_only_prefix(ckpt) is not None


def load_vae_file(path, raw: dict[str, Any], *, dtype=torch.float32, device="cpu", allow_pickle=False,
                  channels_last=False):
    """A VAE-only file (original or diffusers key names), with the VAE config `raw`."""
    ckpt = opened(path, allow_pickle)
    beside = detect_flux_file(ckpt.shapes) is not None  # a Flux all-in-one checkpoint: its VAE part only
    prefix = next((p for p in VAE_PREFIXES if p + "decoder.conv_in.weight" in ckpt.shapes), None) if beside else \
        _vae_only_prefix(ckpt)
    if prefix is None:
        if "model.diffusion_model.input_blocks.0.0.weight" in ckpt.shapes:
            return load_single_file(path, "vae", dtype=dtype, device=device, allow_pickle=allow_pickle,
                                    channels_last=channels_last)
        raise CheckpointError(f"{ckpt.path} is not a VAE: its keys start with {top_prefixes(list(ckpt.shapes))}.")
    model = _build("AutoencoderKL", raw, f"the VAE config for {ckpt.path}")
    keys = [k for k in ckpt.shapes if k.startswith(prefix)] if beside else list(ckpt.shapes)
    if prefix + "encoder.down_blocks.0.resnets.0.conv1.weight" in ckpt.shapes:  # diffusers names already
        plan = {k[len(prefix):]: Take(k) for k in keys if k not in LDM_BUFFERS}
    else:
        plan = ldm_vae.plan_vae(keys, prefix, len(model.config.block_out_channels))
    check(plan, [k for k in keys if k not in LDM_BUFFERS], ckpt.shapes, model, "the AutoencoderKL of its config",
          str(ckpt.path))
    device = torch.device(device)
    install_weights(model, read(plan, ckpt.entries, model, default_dtype(dtype), device, channels_last))
    return model.eval()


def _text_plan(shapes, layout, raw) -> tuple[Plan, list[str]]:
    keys = list(shapes)
    if layout.kind == "clip":
        return clip.plan_clip(keys, layout.prefix)
    projection = "CLIPTextModelWithProjection" in (raw.get("architectures") or [])
    return clip.plan_open_clip(keys, layout.prefix, shapes, raw.get("num_hidden_layers", 12), projection)


def _text_model(raw: dict[str, Any], where: str):
    from nodegraph.models.text import build_text_encoder  # CLIPTextModel, or …WithProjection as `raw` says

    return build_text_encoder(raw, where)


def _tokenizer(fam: Family, name: str, config: str | None):
    from nodegraph.models.loading import load_component
    from nodegraph.models.sources import BUILTIN_ROOT

    if config:
        return load_component(config, name)
    options = builtin_config(fam.config).get(name)
    if options is None:
        raise CheckpointError(f"a {fam.description} checkpoint has no `{name}`.")
    from nodegraph.models.clip_tokenizer import CLIPTokenizer

    return CLIPTokenizer.from_folder(BUILTIN_ROOT / "clip_tokenizer", **options)


def scheduler_config(ckpt: CheckpointFile, fam: Family, config: str | None) -> dict[str, Any]:
    """The scheduler config: `config`'s, or the family's built-in one; for SD2 the prediction type follows
    diffusers' rule (v-prediction, but ε for a checkpoint saved at global step 875000: the 512 base model)."""
    if config:
        from nodegraph.models.loading import load_component

        return load_component(config, "scheduler")
    cfg = builtin_config(fam.config)["scheduler"]
    if fam.name == "sd2" and ckpt.global_step == SD2_EPSILON_STEP:
        cfg["prediction_type"] = "epsilon"
    return cfg


def _config_source(config: str, name: str) -> dict[str, Any]:
    from nodegraph.models.sources import resolve_source

    src = resolve_source(config)
    path = f"{name}/config.json" if src.has_folder(name) else "config.json"
    return src.read_json(path)
