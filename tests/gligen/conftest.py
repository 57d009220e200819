"""The tiny SD1 pipeline and a tiny GLIGEN model for it (tests/gligen/tiny_gligen.py), built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def gligen_sd(tmp_path_factory):
    """(tiny SD1 diffusers folder, diffusers' gated UNet, the ComfyUI-layout GLIGEN file of its fusers)."""
    from tiny_gligen import gated_unet, write_gligen_file

    from tests.graphs.tiny_pipelines import save_tiny_sd

    root = tmp_path_factory.mktemp("gligen")
    folder = save_tiny_sd(root / "tiny-sd1")
    unet = gated_unet(folder)
    return folder, unet, write_gligen_file(unet, root / "gligen" / "tiny_gligen.safetensors")
