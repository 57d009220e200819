import pytest


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    from tests.models.adapters.lora_files import session_tiny_sd

    return session_tiny_sd(tmp_path_factory)
