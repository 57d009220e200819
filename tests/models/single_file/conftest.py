"""Tiny single-file checkpoints, written in the original layout from tiny diffusers pipelines (built once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ldm_layout import write_sd_file  # noqa: E402


@pytest.fixture(scope="session")
def sd1_folder(tmp_path_factory) -> Path:
    from tests.graphs.tiny_pipelines import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("sf") / "tiny-sd1")


@pytest.fixture(scope="session")
def sd1_file(sd1_folder, tmp_path_factory) -> Path:
    return write_sd_file(sd1_folder, tmp_path_factory.mktemp("sf") / "tiny-sd1.safetensors")


@pytest.fixture(scope="session")
def sd1_images(sd1_folder, sd1_file):
    """(diffusers' image from the folder, diffusers' image from the single file with config=folder)."""
    import diffusers
    from test_single_file_sd1 import diffusers_image

    folder = diffusers.StableDiffusionPipeline.from_pretrained(sd1_folder, safety_checker=None)
    single = diffusers.StableDiffusionPipeline.from_single_file(
        str(sd1_file), config=str(sd1_folder), local_files_only=True, safety_checker=None)
    return diffusers_image(folder), diffusers_image(single)
