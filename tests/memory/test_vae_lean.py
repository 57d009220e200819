"""Lean untiled decode (models/vae_lean.py) and the decode choice (memory/vae.py `decode_pass`): plain untiled if it
fits, else lean untiled (the same bits), else the exact tiled pass."""

from __future__ import annotations

import pytest
import torch

from nodegraph.core import RunContext, RunMode
from nodegraph.memory import vae as memory_vae
from nodegraph.models.loading import load_component
from nodegraph.models.vae_lean import lean_decode
from nodegraph.models.vae_tiling import decode_activation_bytes, tiled_decode
from nodegraph.nodes.vae import VAEDecode

CONFIG = dict(block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, layers_per_block=2, latent_channels=4)
LATENTS = (2, 4, 9, 7)  # batch 2, odd sizes


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import diffusers

    torch.manual_seed(0)
    reference = diffusers.AutoencoderKL(**CONFIG)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    path = tmp_path_factory.mktemp("vae")
    reference.save_pretrained(path)
    return path


def _latents(dtype):
    return torch.randn(LATENTS, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_decode_equals_the_plain_decode_bit_for_bit(folder, dtype):
    vae = load_component(folder, "vae", dtype=dtype)
    with torch.no_grad():
        plain, lean = vae.decode(_latents(dtype)), lean_decode(vae, _latents(dtype))
        tiled = tiled_decode(vae, _latents(dtype), 32)
    assert torch.equal(plain, lean)
    if dtype == torch.bfloat16:  # the comparison sees a rounding difference: the tiled bf16 decode has some
        assert not torch.equal(plain, tiled)


def test_decode_pass_takes_plain_then_lean_then_tiled(folder, monkeypatch):
    vae = load_component(folder, "vae", dtype=torch.bfloat16)  # bf16: where the plain decode keeps fp32 temporaries
    plain = decode_activation_bytes(vae, LATENTS, tiled=False)
    lean = decode_activation_bytes(vae, LATENTS, tiled=False, lean=True)
    assert lean < plain
    monkeypatch.setattr(memory_vae, "headroom", lambda device, budget: budget)

    def choice(room, tiling="auto"):
        return memory_vae.decode_pass(tiling, vae, LATENTS, "cpu", room, 32)

    assert [choice(plain), choice(plain - 1), choice(lean), choice(lean - 1)] == ["plain", "lean", "lean", "tiled"]
    assert [choice(plain, "on"), choice(lean - 1, "off"), choice(plain, "off")] == ["tiled", "lean", "plain"]


def test_budgeted_bf16_decode_takes_the_lean_pass_and_gives_the_same_pixels(folder, monkeypatch):
    from nodegraph.models import vae_lean

    vae = load_component(folder, "vae", dtype=torch.bfloat16)
    lean = decode_activation_bytes(vae, LATENTS, tiled=False, lean=True)
    monkeypatch.setattr(memory_vae, "headroom", lambda device, budget: 1 << 40 if budget is None else budget)
    calls = []
    monkeypatch.setattr(vae_lean, "lean_decode", lambda *a: calls.append(1) or lean_decode(*a))

    def decode(mode):
        inputs = VAEDecode.Inputs.model_construct(vae=vae, latents=_latents(torch.bfloat16), force_upcast=False,
                                                  tiling="auto", tile_size=32)
        return VAEDecode().run(inputs, RunContext(mode=mode))["image"]

    unbudgeted = decode(RunMode(device="cpu"))
    assert calls == []
    budgeted = decode(RunMode(device="cpu", max_memory=lean))  # the lean pass fits, the plain one does not
    assert calls == [1]
    assert torch.equal(budgeted, unbudgeted)
