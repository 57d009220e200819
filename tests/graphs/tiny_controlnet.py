"""Tiny random ControlNets saved by diffusers, built from the tiny SD pipeline's UNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

from tests.models.tiny_checkpoints import perturbed


def save_tiny_controlnet(sd_folder: Path, folder: Path, seed: int) -> Path:
    """`ControlNetModel.from_unet` of the tiny SD UNet, every weight perturbed: the zero convolutions too, so
    the control image visibly changes the result. Its image embedding shrinks 2× (two channel steps), like the
    tiny VAE, as SD's (16, 32, 96, 256) shrinks 8× like SD's VAE."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    perturbed(controlnet, seed, scale=0.1).save_pretrained(folder)
    return folder


def save_pattern(path: Path, width: int, height: int, seed: int) -> Path:
    """A random RGB picture with sharp edges (blocks of 4×4 pixels), like an edge or segmentation map."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    PIL.Image.fromarray(blocks.repeat(4, 0).repeat(4, 1)[:height, :width]).save(path)
    return path
