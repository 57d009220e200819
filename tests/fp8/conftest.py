import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "flow"))  # the Flux / Z-Image fixtures and layouts


@pytest.fixture(scope="session")
def tiny_flux_dev(tmp_path_factory) -> Path:
    """A tiny random Flux.1-dev pipeline folder saved by diffusers (tests/flow/tiny_flux.py)."""
    from tiny_flux import save_tiny_flux

    return save_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux-dev")


@pytest.fixture(scope="session")
def tiny_z_image(tmp_path_factory) -> Path:
    from tiny_z_image import save_tiny_z_image

    return save_tiny_z_image(tmp_path_factory.mktemp("z-image") / "tiny-z-image")


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory) -> Path:
    from tests.sd3.tiny_sd3 import save_tiny_sd3

    return save_tiny_sd3(tmp_path_factory.mktemp("sd3") / "tiny-sd3")


@pytest.fixture(scope="session")
def sd1_file(tmp_path_factory) -> Path:
    """A tiny SD1 checkpoint in the original (LDM) layout."""
    from tests.graphs.tiny_pipelines import save_tiny_sd
    from tests.models.single_file.ldm_layout import write_sd_file

    root = tmp_path_factory.mktemp("sd1")
    return write_sd_file(save_tiny_sd(root / "tiny-sd1"), root / "tiny-sd1.safetensors")
