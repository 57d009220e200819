"""Weights streamed from the memory-mapped file (models/streaming.py): the same numbers as the resident model,
and each block's pages given back after it runs (read from /proc/self/smaps: the file mapping's resident size)."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models import streaming
from nodegraph.models.loading import load_component

from tiny_checkpoints import SD_UNETS

VAE = dict(block_out_channels=(64, 256, 256, 256), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, layers_per_block=1, latent_channels=4)


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    """A VAE of about 70 MB in fp32: its conv kernels span many whole pages."""
    import diffusers

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vae-stream")
    diffusers.AutoencoderKL(**VAE).save_pretrained(folder)
    return folder


def _mapped_rss(folder) -> int:
    """Resident bytes of this process's mappings of `folder`'s weight file (smaps `Rss:` lines)."""
    target, total, inside = str((folder / "diffusion_pytorch_model.safetensors").resolve()), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = line.rstrip().endswith(target)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16-from-fp32-file"])
def test_a_streamed_unet_computes_the_resident_unets_numbers_bit_for_bit(saved, monkeypatch, dtype):
    monkeypatch.setattr(streaming, "UNIT_BYTES", 16 << 10)  # many small units
    _, folder = saved("sd1")
    resident, streamed = load_component(folder, "unet", dtype=dtype), load_component(folder, "unet", dtype=dtype,
                                                                                    stream=True)
    assert streamed.dtype == dtype
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 8, 8, generator=generator).to(dtype)
    text = torch.randn(2, 7, SD_UNETS["sd1"]["cross_attention_dim"], generator=generator).to(dtype)
    with torch.no_grad():
        assert torch.equal(streamed(x, 500, text), resident(x, 500, text))
    assert streamed.streamed_weights.released > 10


def test_a_streamed_vae_gives_its_pages_back_after_each_block(vae_folder, monkeypatch):
    monkeypatch.setattr(streaming, "UNIT_BYTES", 4 << 20)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    size = (vae_folder / "diffusion_pytorch_model.safetensors").stat().st_size
    resident = load_component(vae_folder, "vae")  # fp32 file in fp32: mapped too, but never given back
    with torch.no_grad():
        expected = resident.decode(z)
    kept = _mapped_rss(vae_folder)
    del resident
    streamed = load_component(vae_folder, "vae", stream=True)
    with torch.no_grad():
        assert torch.equal(streamed.decode(z), expected)
    after = _mapped_rss(vae_folder)
    assert kept > 0.4 * size  # the decoder's half of the file stayed resident
    assert after < 0.02 * size, (after, size)  # measured: 0.4 % (boundary pages shared with small tensors)
