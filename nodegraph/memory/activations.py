"""What a run's steps add on top of the weights while they compute, estimated before anything loads.

Counted: the VAE decode and encode (models/vae_tiling.py `decode_bytes`: untiled, or the exact tiled pass a
budget makes the node choose), which on real-size models is the largest activation of a text-to-image run
(SDXL-size, 1024², bf16: 3.6 GB estimated untiled, 0.66 GB tiled). The size comes from the graph's `height` /
`width` / `batch_size` inputs, else the VAE's native `sample_size`; the VAE's channels from its config.json beside
the weights (a single-file checkpoint: the SD/SDXL VAE's), the latent the image over the VAE's downsampling (2 a
block after the first: 8 for SD's four blocks, 4 for digits' three). The denoiser's are in memory/denoiser.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VAE_NODES = ("VAEDecode", "VAEEncode")  # node types whose work is a VAE pass over the whole image
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "sample_size": 1024}  # SD 1/2, SDXL, Flux, SD3 VAEs


def vae_config(model: str, **options: Any) -> dict | None:
    """The VAE's config.json as written (block_out_channels, sample_size); the SD VAE's for a single-file
    checkpoint or a folder without one; None where the VAE is not on this disk (a hub repo not downloaded yet
    counts nothing, as its weights do)."""
    from nodegraph.models.prefetch import component_files

    files = component_files(model, "vae", **options)
    if not files:
        return None
    config = files[0].parent / "config.json"
    if not Path(model).expanduser().is_file() and config.is_file():
        return dict(SD_VAE, **_read_config(config))
    return dict(SD_VAE)


def _read_config(config: Path) -> dict[str, Any]:
    """The VAE's config.json, checked for what the estimate reads; InputRefused naming the file (and the line and
    column of malformed JSON) where it is not a JSON object or its sizes are not positive integers."""
    from nodegraph.spec.limits import InputRefused, active_limits
    from nodegraph.spec.reading import JsonProblem, load_json, read_limited

    hint = "fix the VAE's config.json or re-download the model"
    try:
        data = load_json(read_limited(config, active_limits().max_input_bytes, str(config), "VAE config"))
    except JsonProblem as exc:
        raise InputRefused("invalid_config", f"{config}:{exc.line}:{exc.col}: {exc.message}", hint) from None
    if not isinstance(data, dict):
        raise InputRefused("invalid_config", f"{config}: the VAE's config is a JSON {type(data).__name__}, not an "
                           f"object", hint)
    channels, size = data.get("block_out_channels", SD_VAE["block_out_channels"]), data.get("sample_size")

    def count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 16

    if not (isinstance(channels, list) and channels and all(count(c) for c in channels)):
        raise InputRefused("invalid_config", f"{config}: `block_out_channels` is {str(channels)[:60]}, not a "
                           f"list of positive integers", hint)
    if size is not None and not count(size):
        raise InputRefused("invalid_config", f"{config}: `sample_size` is {str(size)[:60]}, not a positive "
                           f"integer", hint)
    return data


def image_shape(values: dict[str, Any], config: dict) -> tuple[int, int, int]:
    """(batch, height, width) of the run's largest images: the graph inputs of those names, else the VAE's native
    size; times `upscale` where the graph has one (graphs/hires_fix.yaml's second pass runs at that size)."""
    native = int(config.get("sample_size") or 1024)

    def value(name: str, default: int) -> int:
        v = values.get(name)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default

    scale = values.get("upscale")
    scale = float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 1 else 1.0
    return value("batch_size", 1), int(value("height", native) * scale), int(value("width", native) * scale)


def vae_work(config: dict, values: dict[str, Any], float_bytes: int, tiled: bool, lean: bool = False) -> int:
    """Bytes a VAEDecode / VAEEncode step adds over the weights (the encoder's are taken as the decoder's; `lean`:
    the lean untiled decode's)."""
    from nodegraph.models.vae_tiling import decode_bytes

    batch, height, width = image_shape(values, config)
    factor = 2 ** (len(config["block_out_channels"]) - 1)  # each block but the last halves the size (digits': 4)
    latent = (batch, 4, max(height // factor, 1), max(width // factor, 1))
    return decode_bytes(tuple(config["block_out_channels"]), latent, float_bytes, tiled, lean=lean)
