"""A VAE that replaces a checkpoint's own: a VAE file (e.g. vae-ft-mse-840000-ema-pruned.safetensors, in the
original or diffusers key names), a whole checkpoint's VAE, or a diffusers VAE folder / hub repo.

A VAE-only file carries no config, and the SD1/SD2 and SDXL VAEs have the same shapes but different
`scaling_factor`s: its config comes from `config` when given, else from the model it is used with (the built-in
config of a single file's family, or the model folder's vae/config.json).
"""

from __future__ import annotations

from typing import Any

import torch

from nodegraph.models.single_file.loader import (_config_source, builtin_config, is_single_file, load_vae_file,
                                                 opened)


def load_override(vae: str, model: str, *, config: str | None = None, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu", allow_pickle: bool = False, channels_last: bool = False):
    from nodegraph.models.loading import load_component

    if not is_single_file(vae):
        return load_component(vae, "vae", dtype=dtype, device=device, allow_pickle=allow_pickle,
                              channels_last=channels_last)
    return load_vae_file(vae, vae_config_for(model, config, allow_pickle), dtype=dtype, device=device,
                         allow_pickle=allow_pickle, channels_last=channels_last)


def vae_config_for(model: str, config: str | None, allow_pickle: bool = False) -> dict[str, Any]:
    """The VAE config the model `model` (with `config`) uses."""
    from nodegraph.models.single_file.detect import detect

    if config:
        return _config_source(config, "vae")
    if is_single_file(model):
        ckpt = opened(model, allow_pickle)
        return builtin_config(detect(ckpt.shapes, str(ckpt.path)).config)["vae"]
    from nodegraph.models.sources import resolve_source

    src = resolve_source(model)
    return src.read_json("vae/config.json" if src.has_folder("vae") else "config.json")
