"""A tiny random 9-channel inpainting pipeline and test pictures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import PIL.Image

from tests.models.tiny_checkpoints import perturbed


def save_tiny_sd_inpaint(sd_folder: Path, folder: Path) -> Path:
    """The tiny SD (or SDXL) pipeline with its UNet replaced by a 9-channel one (latents, mask, masked-image
    latents)."""
    from diffusers import UNet2DConditionModel

    shutil.copytree(sd_folder, folder)
    config = dict(UNet2DConditionModel.load_config(sd_folder / "unet"), in_channels=9)
    shutil.rmtree(folder / "unet")
    perturbed(UNet2DConditionModel.from_config(config), 21, scale=0.05).save_pretrained(folder / "unet")
    return folder


def save_picture_and_mask(root: Path, width: int = 24, height: int = 16) -> tuple[Path, Path]:
    """A smooth colour picture and a mask repainting a rectangle (with a grey edge, to test binarisation)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 10, y * 15, (x + y) * 6], axis=-1).clip(0, 255).astype("uint8")
    mask = np.zeros((height, width), dtype="uint8")
    mask[4:12, 6:18] = 255
    mask[4:12, 6] = 127  # below half: kept
    mask[4:12, 17] = 128  # half: repainted
    PIL.Image.fromarray(rgb).save(root / "picture.png")
    PIL.Image.fromarray(mask).save(root / "mask.png")
    return root / "picture.png", root / "mask.png"
