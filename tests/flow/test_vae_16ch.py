"""The 16-channel AutoencoderKL of Flux / SD3 / Z-Image (no quant convs, scaling and shift factors) loaded by
nodegraph from the tiny Z-Image folder, against diffusers' AutoencoderKL from the same folder."""

import torch


def test_16_channel_vae_without_quant_convs_decodes_and_encodes_like_diffusers(tiny_z_image):
    from diffusers import AutoencoderKL

    from nodegraph.models.loading import load_component

    ours, theirs = load_component(tiny_z_image, "vae"), AutoencoderKL.from_pretrained(tiny_z_image, subfolder="vae")
    assert ours.quant_conv is None and ours.post_quant_conv is None and ours.config.latent_channels == 16
    z = torch.randn(2, 16, 6, 4, generator=torch.Generator().manual_seed(0))
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours.decode(z), theirs.decode(z).sample)
        a = ours.encode(x).sample(torch.Generator().manual_seed(2))
        b = theirs.encode(x).latent_dist.sample(torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_vae_nodes_apply_shift_factor_where_diffusers_pipelines_do(tiny_z_image):
    from nodegraph.models.loading import load_component
    from nodegraph.nodes.vae import from_vae_space, to_vae_space

    config = load_component(tiny_z_image, "vae").config
    latents = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(3))
    # ZImagePipeline: latents / scaling_factor + shift_factor; ZImageImg2ImgPipeline: (z - shift) * scale
    assert torch.equal(to_vae_space(latents, config), latents / 0.3611 + 0.1159)
    assert torch.equal(from_vae_space(latents, config), (latents - 0.1159) * 0.3611)
    assert to_vae_space(latents, config).sub(latents / 0.3611).abs().min() > 0.1  # the shift is not lost


def test_the_real_flux_vae_configuration_has_diffusers_keys_and_shapes():
    from diffusers import AutoencoderKL as Theirs

    from nodegraph.models.autoencoder_kl import AutoencoderKL

    # Z-Image-Turbo's vae/config.json (hub; the Flux "ae"): 4 levels, 16 latent channels, no quant convs
    raw = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
               up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
               latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
               use_quant_conv=False, use_post_quant_conv=False, force_upcast=True, mid_block_add_attention=True)
    with torch.device("meta"):
        ours, theirs = AutoencoderKL.from_config(raw), Theirs(**raw)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert sum(v.numel() for v in ours.state_dict().values()) == 83_819_683
