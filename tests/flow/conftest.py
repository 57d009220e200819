import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_z_image(tmp_path_factory) -> Path:
    """A tiny random Z-Image pipeline folder saved by diffusers (tests/flow/tiny_z_image.py)."""
    from tiny_z_image import save_tiny_z_image

    return save_tiny_z_image(tmp_path_factory.mktemp("z-image") / "tiny-z-image")


@pytest.fixture(scope="session")
def tiny_flux_dev(tmp_path_factory) -> Path:
    """A tiny random Flux.1-dev pipeline folder saved by diffusers (tests/flow/tiny_flux.py)."""
    from tiny_flux import save_tiny_flux

    return save_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux-dev")


@pytest.fixture(scope="session")
def tiny_flux_schnell(tmp_path_factory) -> Path:
    """A tiny random Flux.1-schnell pipeline folder (no guidance embedding, static shift 1)."""
    from tiny_flux import save_tiny_flux

    return save_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux-schnell", schnell=True)
