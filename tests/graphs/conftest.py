import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_pipelines import save_tiny_ddpm, save_tiny_sd  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_ddpm(tmp_path_factory) -> Path:
    return save_tiny_ddpm(tmp_path_factory.mktemp("models") / "tiny-ddpm")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> tuple[Path, Path]:
    """(base, refiner) folders of a tiny random SDXL pair saved by diffusers."""
    from tiny_sdxl import save_tiny_sdxl

    root = tmp_path_factory.mktemp("sdxl")
    return save_tiny_sdxl(root / "tiny-sdxl-base", root / "tiny-sdxl-refiner")


@pytest.fixture(scope="session")
def tiny_controlnets(tiny_sd, tmp_path_factory) -> tuple[Path, Path]:
    """Two different tiny random ControlNets for the tiny SD pipeline."""
    from tiny_controlnet import save_tiny_controlnet

    root = tmp_path_factory.mktemp("controlnet")
    return save_tiny_controlnet(tiny_sd, root / "cn-a", 11), save_tiny_controlnet(tiny_sd, root / "cn-b", 12)


@pytest.fixture(scope="session")
def tiny_sd_inpaint(tiny_sd, tmp_path_factory) -> Path:
    """The tiny SD pipeline with a 9-channel inpainting UNet."""
    from tiny_inpaint import save_tiny_sd_inpaint

    return save_tiny_sd_inpaint(tiny_sd, tmp_path_factory.mktemp("inpaint") / "tiny-sd-inpaint")


@pytest.fixture(scope="session")
def tiny_sdxl_inpaint(tiny_sdxl, tmp_path_factory) -> Path:
    """The tiny SDXL base with a 9-channel inpainting UNet."""
    from tiny_inpaint import save_tiny_sd_inpaint

    return save_tiny_sd_inpaint(tiny_sdxl[0], tmp_path_factory.mktemp("sdxl-inpaint") / "tiny-sdxl-inpaint")
