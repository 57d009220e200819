from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory) -> Path:
    """A tiny random SD3.5-like pipeline folder saved by diffusers (tests/sd3/tiny_sd3.py)."""
    from tests.sd3.tiny_sd3 import save_tiny_sd3

    return save_tiny_sd3(tmp_path_factory.mktemp("sd3") / "tiny-sd3")
