"""The tiny SD pipeline of the graph tests and LoRA files for it, written once per session."""

from __future__ import annotations

import pytest
from lora_files import lora_targets, write_kohya, write_peft

from tests.models.adapters.lora_files import session_tiny_sd


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    return session_tiny_sd(tmp_path_factory)



@pytest.fixture(scope="session")
def loras(tiny_sd, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    targets = lora_targets(tiny_sd)
    return {
        "kohya": write_kohya(folder / "kohya_style.safetensors", targets, seed=1),
        "peft": write_peft(folder / "peft_style.safetensors", targets, seed=2),
    }


@pytest.fixture(scope="session")
def sdxl_loras(tmp_path_factory):
    """(tiny SDXL base folder, {"kohya": file, "peft": file})."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "graphs"))  # tiny_sdxl imports its neighbours
    from lora_files import sdxl_targets, write_kohya_sdxl, write_peft_sdxl
    from tiny_sdxl import save_tiny_sdxl

    root = tmp_path_factory.mktemp("sdxl")
    base, _ = save_tiny_sdxl(root / "base", root / "refiner")
    targets = sdxl_targets(base)
    return base, {"kohya": write_kohya_sdxl(root / "kohya_sdxl.safetensors", targets, seed=11),
                  "peft": write_peft_sdxl(root / "peft_sdxl.safetensors", targets, seed=12)}
