"""VAEDecode / VAEEncode `tiling`: "on" gives the untiled image within 1/255, "auto" tiles only when the untiled
pass would not fit the run's budget."""

from __future__ import annotations

import pytest
import torch

from nodegraph.core import RunContext, RunMode
from nodegraph.models.loading import load_component
from nodegraph.nodes.vae import VAEDecode, VAEEncode

CONFIG = dict(block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, layers_per_block=1, latent_channels=4)


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    import diffusers

    torch.manual_seed(0)
    reference = diffusers.AutoencoderKL(**CONFIG)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    folder = tmp_path_factory.mktemp("vae")
    reference.save_pretrained(folder)
    return load_component(folder, "vae")


def _decode(vae, tiling, mode=RunMode(device="cpu")):
    latents = torch.randn(1, 4, 9, 7, generator=torch.Generator().manual_seed(0))
    inputs = VAEDecode.Inputs.model_construct(vae=vae, latents=latents, force_upcast=False, tiling=tiling,
                                              tile_size=32)
    return VAEDecode().run(inputs, RunContext(mode=mode))["image"]


@pytest.fixture
def tiled_calls(monkeypatch):
    from nodegraph.models import vae_tiling

    calls = []
    for name in ("tiled_decode", "tiled_encode"):
        real = getattr(vae_tiling, name)
        monkeypatch.setattr(vae_tiling, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or
                            _real(*a, **k))
    return calls


def test_decode_tiled_on_matches_off_within_one_level(vae, tiled_calls):
    on, off = _decode(vae, "on"), _decode(vae, "off")
    assert tiled_calls == ["tiled_decode"]
    assert 0 < (on - off).abs().max().item() <= 1 / 255


def test_auto_tiles_only_when_the_budget_is_too_small(vae, tiled_calls):
    _decode(vae, "auto")  # no budget: a tiny decode fits the free memory
    assert tiled_calls == []
    _decode(vae, "auto", RunMode(device="cpu", max_memory=1 << 20))  # 1 MB: less than the process holds already
    assert tiled_calls == ["tiled_decode"]


def test_encode_tiled_on_matches_off(vae, tiled_calls):
    image = torch.rand(1, 3, 72, 56, generator=torch.Generator().manual_seed(1))

    def encode(tiling):
        inputs = VAEEncode.Inputs.model_construct(vae=vae, image=image, generator=torch.Generator().manual_seed(2),
                                                  batch_size=1, tiling=tiling, tile_size=32)
        return VAEEncode().run(inputs, RunContext(mode=RunMode(device="cpu")))["latents"]

    on, off = encode("on"), encode("off")
    assert tiled_calls == ["tiled_encode"]
    assert (on - off).abs().max().item() < 1e-4
