import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_z_image(tmp_path_factory) -> Path:
    """A tiny random Z-Image pipeline folder saved by diffusers (tests/flow/tiny_z_image.py)."""
    from tiny_z_image import save_tiny_z_image

    return save_tiny_z_image(tmp_path_factory.mktemp("z-image") / "tiny-z-image")
