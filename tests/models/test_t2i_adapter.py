"""The native T2I-Adapter against diffusers': the same four features from a file in TencentARC's layout (what
ComfyUI's `load_t2i_adapter` reads) and diffusers' own, and the UNet with them as `adapter_residuals` equal to
diffusers' UNet with `down_intrablock_additional_residuals`; without them the UNet is unchanged."""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import perturbed

from tests.models.t2i_files import tencentarc_layout

from nodegraph.models.errors import CheckpointError
from nodegraph.models.t2i_adapter import load_t2i_adapter

CHANNELS = [8, 16, 32, 32]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """(diffusers T2IAdapter, path of its TencentARC-layout file, path of its diffusers-layout file)."""
    from diffusers import T2IAdapter
    from safetensors.torch import save_file

    torch.manual_seed(0)
    theirs = perturbed(T2IAdapter(in_channels=3, channels=CHANNELS, num_res_blocks=2, downscale_factor=8,
                                  adapter_type="full_adapter"), 4)
    folder = tmp_path_factory.mktemp("t2i")
    save_file(tencentarc_layout(theirs.state_dict()), str(folder / "t2iadapter_depth.safetensors"))
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(folder / "diffusers.safetensors"))
    return theirs, folder / "t2iadapter_depth.safetensors", folder / "diffusers.safetensors"


@pytest.mark.parametrize("layout", [1, 2])
def test_adapter_features_match_diffusers_in_both_layouts(adapters, layout):
    theirs, *files = adapters
    ours = load_t2i_adapter(files[layout - 1])
    hint = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = theirs(hint), ours(hint)
    assert [tuple(f.shape) for f in got] == [(2, 8, 8, 16), (2, 16, 4, 8), (2, 32, 2, 4), (2, 32, 1, 2)]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert expected[-1].abs().mean() > 1e-2


def test_unet_with_adapter_residuals_matches_diffusers_and_is_unchanged_without(adapters):
    from diffusers import UNet2DConditionModel as DiffusersUNet

    from nodegraph.models.unet_2d_condition import UNet2DConditionModel

    torch.manual_seed(0)
    theirs = perturbed(DiffusersUNet(
        block_out_channels=CHANNELS, layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=16, attention_head_dim=2,
        norm_num_groups=8), 5)
    ours = UNet2DConditionModel.from_config(dict(theirs.config))
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    adapter = load_t2i_adapter(adapters[1])
    g = torch.Generator().manual_seed(2)
    x, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 7, 16, generator=g)
    with torch.no_grad():
        features = [0.7 * f for f in adapter(torch.rand(1, 3, 64, 64, generator=g))]
        expected = theirs(x, 500, context, down_intrablock_additional_residuals=[f.clone() for f in features]).sample
        got = ours(x, 500, context, adapter_residuals=features)
        plain = theirs(x, 500, context).sample
        ours_plain = ours(x, 500, context)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_plain, plain, atol=1e-5, rtol=1e-5)
    assert (got - ours_plain).abs().max() > 1e-2


def test_a_file_that_is_not_a_full_sd1_adapter_is_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    save_file({"body.0.in_conv.weight": torch.zeros(4, 192, 1, 1)}, str(tmp_path / "light.safetensors"))
    with pytest.raises(CheckpointError, match="light T2I-Adapter"):
        load_t2i_adapter(tmp_path / "light.safetensors")


def test_odd_sides_pool_as_comfyui_zero_padded_and_counted():
    """ComfyUI's Downsample pads an odd side by one zero on both ends and counts it in the 2×2 mean (diffusers'
    ceil_mode pooling does not): the arithmetic written out here on a 3×5 map."""
    from nodegraph.models.t2i_adapter import Downsample

    x = torch.arange(15.0).reshape(1, 1, 3, 5) + 1
    padded = torch.zeros(1, 1, 5, 7)
    padded[..., 1:4, 1:6] = x
    expected = torch.stack([torch.stack([padded[0, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean() for j in range(3)])
                            for i in range(2)])
    torch.testing.assert_close(Downsample(1, use_conv=False)(x)[0, 0], expected)
