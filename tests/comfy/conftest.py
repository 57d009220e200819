"""A ComfyUI models/ folder holding the tiny SD1.x single file, and ComfyUI's default txt2img workflow for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def sd1_folder(tmp_path_factory) -> Path:
    from tests.graphs.tiny_pipelines import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("comfy") / "tiny-sd1")


@pytest.fixture(scope="session")
def models_dir(sd1_folder, tmp_path_factory) -> Path:
    """ComfyUI's layout: models/checkpoints/tiny-sd1.safetensors (the tiny pipeline in the original SD layout)."""
    from tests.models.single_file.ldm_layout import write_sd_file

    root = tmp_path_factory.mktemp("comfy") / "models"
    (root / "checkpoints").mkdir(parents=True)
    write_sd_file(sd1_folder, root / "checkpoints" / "tiny-sd1.safetensors")
    return root


@pytest.fixture(scope="session")
def default_run(models_dir, sd1_folder, tmp_path_factory):
    """(pixels, PNG path) of ComfyUI's default workflow run once through `nodegraph run workflow.json`."""
    from workflows import DEFAULT_API, run_cli

    return run_cli(tmp_path_factory.mktemp("default"), DEFAULT_API, models_dir, sd1_folder)
