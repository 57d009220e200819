"""The tiny SD pipeline of the graph tests and LoRA files for it, written once per session."""

from __future__ import annotations

import pytest
from lora_files import lora_targets, write_kohya, write_peft

from tests.graphs.tiny_pipelines import save_tiny_sd


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")



@pytest.fixture(scope="session")
def loras(tiny_sd, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    targets = lora_targets(tiny_sd)
    return {
        "kohya": write_kohya(folder / "kohya_style.safetensors", targets, seed=1),
        "peft": write_peft(folder / "peft_style.safetensors", targets, seed=2),
    }
