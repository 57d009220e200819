"""Helpers shared by the diffusion nodes (imported lazily: they need torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# StableDiffusionPipeline rewrites two settings of outdated scheduler configs when it is built.
SD_PIPELINE_FIXES = {"steps_offset": 1, "clip_sample": False}


def make_scheduler(config: Mapping[str, Any], name: str | None, *, sd_pipeline: bool):
    """A fresh scheduler from a checkpoint's config dict, as the diffusers pipeline would build it.

    With `sd_pipeline`, StableDiffusionPipeline's fixes are applied to the checkpoint's own scheduler first; a
    swap to another class then carries a fixed value over only when the json states that key, because
    diffusers' `from_config` drops keys the original file left to their defaults.
    """
    from nodegraph.schedulers import create_scheduler

    if not sd_pipeline:
        return create_scheduler(config, name)
    own = create_scheduler(config)
    # diffusers' check sees json keys the class does not declare too (a PNDM json's `clip_sample: true`).
    current = {**own.explicit_config, **own.config}
    fixes = {k: v for k, v in SD_PIPELINE_FIXES.items() if k in current and current[k] != v}
    if name is None or _same_class(own, name):
        return create_scheduler(config, None, overrides=fixes)
    stated = {k: v for k, v in fixes.items() if k in own.explicit_config}
    return create_scheduler(config, name, overrides=stated)


def _same_class(scheduler, name: str) -> bool:
    from nodegraph.schedulers import scheduler_class

    return scheduler_class(name) is type(scheduler)


def vae_scale_factor(vae) -> int:
    """How many pixels one latent covers per side: 2 per downsampling stage of the VAE."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_multiple(step: int, **sizes: int) -> None:
    """Refuse a side that is not a multiple of `step` pixels (a latent token), naming it and the nearest size."""
    for name, size in sizes.items():
        if size % step:
            raise ValueError(f"`{name}` {size} must be a multiple of {step} for this model; "
                             f"try {size // step * step or step}")


def randn(shape: tuple[int, ...], generator, ctx):
    """Gaussian noise drawn on the CPU generator in the run's dtype, then moved: the same on every device."""
    import torch

    return torch.randn(shape, generator=generator, dtype=ctx.dtype, device="cpu").to(ctx.device)


def encoder_pixels(pixels, dtype):
    """Pixels already in [-1, 1] (float32, as diffusers' image processor computes `2x − 1`) → the VAE encoder's
    input: rounded to `dtype` in the layout the processor leaves them in, channels-last (it transposes the HWC
    numpy array without copying). The layout is kept by every convolution of the encoder, and in bf16 the
    mid-block attention's projections round differently on it (12/255 in an img2img image, 23/255 inpainting)."""
    import torch

    return pixels.contiguous(memory_format=torch.channels_last).to(dtype)
