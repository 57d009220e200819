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
