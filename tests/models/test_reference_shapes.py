"""Models built from the real SD1.4 and ddpm-cat-256 configs have exactly the keys and shapes of the real
checkpoints (after legacy-key conversion), without downloading them: the lists in data/reference were read from
the real files (copied from shared/notes/reference)."""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import DATA, reference_configs

from nodegraph.models.autoencoder_kl import AutoencoderKL
from nodegraph.models.text import build_text_encoder
from nodegraph.models.unet_2d import UNet2DModel
from nodegraph.models.unet_2d_condition import UNet2DConditionModel

CASES = {
    "ddpm_cat256_unet": (UNet2DModel.from_config, "DDPM_CAT_256_UNET"),
    "sd14_unet": (UNet2DConditionModel.from_config, "SD14_UNET"),
    "sd14_vae": (AutoencoderKL.from_config, "SD14_VAE"),
    "sd14_text_encoder": (build_text_encoder, "SD14_TEXT_ENCODER"),
}


def reference_keys(name: str) -> dict[str, tuple[int, ...]]:
    lines = (DATA / "reference" / f"keys_{name}.txt").read_text().splitlines()
    return {key: tuple(int(d) for d in shape.strip("[]").split(",")) for key, shape in (l.split("\t") for l in lines)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_config_builds_the_real_state_dict(name):
    build, config_key = CASES[name]
    with torch.device("meta"):
        model = build(reference_configs()[config_key])
    expected = reference_keys(name)
    assert len(expected) > 100
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
