"""nodegraph's models, loaded from checkpoints diffusers saved, compute what diffusers computes (fp32, 1e-5)."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.loading import load_component

from tiny_checkpoints import DDPM_UNETS, SD_UNETS

ATOL = 1e-5


def close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= ATOL


# float timesteps (Euler-style schedulers), Python numbers, 0-d tensors, and one timestep per sample
TIMESTEPS = [10, 999.5, torch.tensor(3.25), torch.tensor([1.5, 900.0])]


@pytest.mark.parametrize("layout", sorted(SD_UNETS))
@pytest.mark.parametrize("timestep", TIMESTEPS, ids=["int", "float", "tensor0d", "tensor1d"])
def test_unet_2d_condition_matches_diffusers(saved, layout, timestep):
    reference, folder = saved(layout)
    unet = load_component(folder, "unet")
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    text = torch.randn(2, 7, SD_UNETS[layout]["cross_attention_dim"], generator=generator)
    with torch.no_grad():
        close(unet(x, timestep, text), reference(x, timestep, text).sample)


def test_unet_2d_condition_resizes_to_odd_skip_sizes_like_diffusers(saved):
    reference, folder = saved("sd1_three_blocks")
    unet = load_component(folder, "unet")
    x, text = torch.randn(1, 4, 10, 6), torch.randn(1, 3, 16)  # 10 and 6 are not multiples of 4
    with torch.no_grad():
        close(unet(x, 500, text), reference(x, 500, text).sample)


@pytest.mark.parametrize("layout", sorted(DDPM_UNETS))
@pytest.mark.parametrize("timestep", [0, 999, torch.tensor(250.75), torch.tensor([3.0, 741.5])],
                         ids=["int0", "int999", "tensor0d", "tensor1d"])
def test_unet_2d_matches_diffusers(saved, layout, timestep):
    reference, folder = saved(layout)
    unet = load_component(folder, "unet")
    size = DDPM_UNETS[layout]["sample_size"]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        close(unet(x, timestep), reference(x, timestep).sample)


def test_unet_2d_keeps_python_float_timesteps_fractional(saved):
    # diffusers' UNet2DModel truncates a Python float to an int; nodegraph keeps it, like a float tensor.
    reference, folder = saved("ddpm_cat")
    unet = load_component(folder, "unet")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        close(unet(x, 12.5), reference(x, torch.tensor([12.5])).sample)


def test_vae_encode_matches_diffusers(saved):
    reference, folder = saved("vae")
    vae = load_component(folder, "vae")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        ours, theirs = vae.encode(x), reference.encode(x).latent_dist
        close(ours.mean, theirs.mean)
        close(ours.std, theirs.std)
        close(ours.mode(), theirs.mode())
        close(ours.sample(torch.Generator().manual_seed(4)), theirs.sample(torch.Generator().manual_seed(4)))


def test_vae_decode_matches_diffusers(saved):
    reference, folder = saved("vae")
    vae = load_component(folder, "vae")
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        close(vae.decode(z), reference.decode(z).sample)
    assert vae.config.scaling_factor == reference.config.scaling_factor


def test_text_encoder_matches_transformers(saved):
    reference, folder = saved("text_encoder")
    encoder = load_component(folder, "text_encoder")
    ids = torch.tensor([[54, 26, 53, 55, 55], [54, 0, 1, 2, 55]])
    with torch.no_grad():
        close(encoder(ids).last_hidden_state, reference(ids).last_hidden_state)
    assert not encoder.training


def test_models_accept_one_timestep_per_sample_or_fail_clearly(saved):
    unet = load_component(saved("sd1")[1], "unet")
    x, text = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 16)
    with torch.no_grad():
        close(unet(x, torch.tensor([7, 7]), text), unet(x, 7, text))
        with pytest.raises(ValueError, match="3 entries for a batch of 2"):
            unet(x, torch.tensor([1, 2, 3]), text)


def test_bf16_load_runs_in_bf16_close_to_fp32(saved):
    folder = saved("sd1")[1]
    fp32, bf16 = load_component(folder, "unet"), load_component(folder, "unet", dtype="bf16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    x, text = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 16)
    with torch.no_grad():
        out = bf16(x.bfloat16(), 10, text.bfloat16())
        assert out.dtype == torch.bfloat16
        assert (out.float() - fp32(x, 10, text)).abs().max() < 0.1 * fp32(x, 10, text).abs().max()


def test_both_unets_take_the_same_call_and_refuse_the_wrong_conditioning(saved):
    ddpm, sd = load_component(saved("ddpm_heads")[1], "unet"), load_component(saved("sd1")[1], "unet")
    with torch.no_grad():
        assert ddpm(torch.randn(1, 3, 8, 8), 5, encoder_hidden_states=None).shape == (1, 3, 8, 8)
        with pytest.raises(ValueError, match="UNet2DModel is unconditional"):
            ddpm(torch.randn(1, 3, 8, 8), 5, torch.randn(1, 3, 16))
        with pytest.raises(ValueError, match=r"needs `encoder_hidden_states` \(B, tokens, 16\)"):
            sd(torch.randn(1, 4, 8, 8), 5)
