"""An SDXL-style UNet (text_time added embedding, per-block transformer depths, linear projections), saved by
diffusers with perturbed random weights, computes what diffusers computes (fp32, 1e-5)."""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import perturbed

from nodegraph.models.loading import load_component

# Unlike diffusers' own test dummy: three blocks, depths (1, 2, 3), 5 time ids (a refiner), flipped sinusoids off.
TINY_SDXL_UNET = dict(block_out_channels=(16, 32, 48), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                      "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                      layers_per_block=1, attention_head_dim=(1, 2, 4), transformer_layers_per_block=(1, 2, 3),
                      cross_attention_dim=24, use_linear_projection=True, norm_num_groups=8,
                      addition_embed_type="text_time", addition_time_embed_dim=6,
                      projection_class_embeddings_input_dim=12 + 5 * 6, flip_sin_to_cos=False, freq_shift=1,
                      sample_size=8)


@pytest.fixture(scope="module")
def sdxl_unet(tmp_path_factory):
    import diffusers

    torch.manual_seed(0)
    reference = perturbed(diffusers.UNet2DConditionModel(**TINY_SDXL_UNET), seed=11)
    folder = tmp_path_factory.mktemp("sdxl_unet")
    reference.save_pretrained(folder)
    return reference, load_component(folder, "unet")


@pytest.mark.parametrize("timestep", [999, 412.5, torch.tensor([3.0, 700.0])], ids=["int", "float", "per_sample"])
def test_sdxl_unet_with_added_conditions_matches_diffusers(sdxl_unet, timestep):
    reference, unet = sdxl_unet
    g = torch.Generator().manual_seed(3)
    x, text, pooled = torch.randn(2, 4, 8, 12, generator=g), torch.randn(2, 9, 24, generator=g), torch.randn(2, 12, generator=g)
    time_ids = torch.tensor([[64.0, 96.0, 0.0, 8.0, 6.0], [32.0, 48.0, 4.0, 0.0, 2.5]])
    with torch.no_grad():
        ours = unet(x, timestep, text, text_embeds=pooled, time_ids=time_ids)
        theirs = reference(x, timestep, text, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        changed = unet(x, timestep, text, text_embeds=pooled, time_ids=time_ids + 1)
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert (changed - ours).abs().max().item() > 1e-3  # the time ids do reach the output


def test_sdxl_unet_without_added_conditions_says_what_it_needs(sdxl_unet):
    _, unet = sdxl_unet
    with pytest.raises(ValueError, match="text_embeds"):
        unet(torch.randn(1, 4, 8, 8), 10, torch.randn(1, 3, 24))


def test_sdxl_width_transformer_is_bit_equal_to_diffusers_in_bf16():
    # At SDXL's 1280 channels, torch's bf16 matmul rounds the linear `proj_in` differently depending on whether
    # the weight requires grad (diffusers' do; nodegraph's loaded weights do not): nodegraph must follow
    # diffusers' order, or bf16 SDXL images drift by up to ~22/255.
    import diffusers

    from nodegraph.models.attention import Transformer2D

    torch.manual_seed(0)
    reference = diffusers.Transformer2DModel(num_attention_heads=20, attention_head_dim=64, in_channels=1280,
                                             cross_attention_dim=32, use_linear_projection=True, norm_num_groups=32)
    reference = perturbed(reference, seed=5, scale=0.02).to(torch.bfloat16)
    ours = Transformer2D(1280, 20, 32, 32, 1, use_linear_projection=True).to(torch.bfloat16)
    ours.load_state_dict(reference.state_dict())
    ours.requires_grad_(False)  # as load_component leaves every weight
    g = torch.Generator().manual_seed(1)
    x, context = torch.randn(2, 1280, 8, 8, generator=g).bfloat16(), torch.randn(2, 5, 32, generator=g).bfloat16()
    with torch.no_grad():
        assert torch.equal(ours(x, context), reference(x, encoder_hidden_states=context).sample)
