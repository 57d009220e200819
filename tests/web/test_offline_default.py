"""web/offline.py: which model a form starts on when the declared default is a hub id not downloaded here."""

import pytest

from nodegraph.spec.document import InputSpec
from nodegraph.web.offline import offline_model

OFFERS_DIGITS = "A pipeline folder, hub repo id, or builtin:digits (offline)."


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def test_an_uncached_hub_default_is_replaced_by_the_builtin_model(hub_cache):
    assert offline_model(InputSpec(type="str", default="CompVis/stable-diffusion-v1-4",
                                   description=OFFERS_DIGITS)) == "builtin:digits"


def test_a_downloaded_hub_default_stays(hub_cache):
    (hub_cache / "models--CompVis--stable-diffusion-v1-4" / "snapshots" / "abc123").mkdir(parents=True)
    assert offline_model(InputSpec(type="str", default="CompVis/stable-diffusion-v1-4",
                                   description=OFFERS_DIGITS)) is None


def test_a_graph_that_does_not_offer_the_builtin_model_keeps_its_default(hub_cache):
    assert offline_model(InputSpec(type="str", default="stabilityai/stable-diffusion-xl-base-1.0",
                                   description="An SDXL base pipeline folder or hub repo id.")) is None


def test_a_local_folder_or_a_non_model_input_keeps_its_default(hub_cache, tmp_path):
    folder = tmp_path / "my" / "model"
    folder.mkdir(parents=True)
    assert offline_model(InputSpec(type="str", default=str(folder), description=OFFERS_DIGITS)) is None
    assert offline_model(InputSpec(type="str", default="a cat", description=OFFERS_DIGITS)) is None
    assert offline_model(InputSpec(type="int", default=3, description=OFFERS_DIGITS)) is None
