"""config.json → config dataclass: diffusers' defaults for absent keys, clear errors for what is unsupported."""

from __future__ import annotations

import pytest
from tiny_checkpoints import reference_configs

from nodegraph.models.config import AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConfig, parse_config
from nodegraph.models.errors import CheckpointError


def test_absent_keys_take_diffusers_defaults():
    vae = parse_config(AutoencoderKLConfig, reference_configs()["SD14_VAE"])  # SD1.4's file has no scaling_factor
    assert vae.scaling_factor == 0.18215 and vae.use_quant_conv and vae.mid_block_add_attention
    cat = parse_config(UNet2DConfig, reference_configs()["DDPM_CAT_256_UNET"])
    assert cat.attention_head_dim is None and cat.downsample_padding == 0 and cat.mid_block_type == "UNetMidBlock2D"


def test_per_block_values_repeat_a_single_value():
    sd = parse_config(UNet2DConditionConfig, reference_configs()["SD14_UNET"])
    assert sd.per_block("attention_head_dim") == (8, 8, 8, 8)
    sd2_config = dict(reference_configs()["SD14_UNET"], attention_head_dim=[5, 10, 20, 20])
    sd2 = parse_config(UNet2DConditionConfig, sd2_config)
    assert sd2.per_block("attention_head_dim") == (5, 10, 20, 20)


@pytest.mark.parametrize("key, value, message", [
    ("addition_embed_type", "image", r"`addition_embed_type` is 'image', but nodegraph supports one of None, "
                                     r"'text_time'"),
    ("addition_embed_type", "text_time", r"`addition_time_embed_dim` is None, but nodegraph supports a positive "
                                         r"integer when `addition_embed_type` is 'text_time'"),
    ("mid_block_type", "UNetMidBlock2DSimpleCrossAttn",
     r"`mid_block_type` is 'UNetMidBlock2DSimpleCrossAttn', but nodegraph supports one of 'UNetMidBlock2DCrossAttn', "
     r"None"),
    ("num_attention_heads", 8, r"`num_attention_heads` is 8, but nodegraph supports None only"),
    ("layers_per_block", "two", r"`layers_per_block` is 'two', but nodegraph supports a value of type "
                                r"`int \| tuple\[int, ...\]`"),
    ("attention_head_dim", [8, 8], r"`attention_head_dim` is \(8, 8\), but nodegraph supports a single value or "
                                   r"one per block \(4\)"),
    ("norm_num_groups", 24, r"`norm_num_groups` is 24, but nodegraph supports a divisor of every block_out_channels"),
    ("use_linear_projection", 1, r"`use_linear_projection` is 1, but nodegraph supports a value of type `bool`"),
])
def test_unsupported_values_name_the_file_key_and_what_is_supported(key, value, message):
    raw = dict(reference_configs()["SD14_UNET"], **{key: value})
    with pytest.raises(CheckpointError, match="^unet/config.json: " + message):
        parse_config(UNet2DConditionConfig, raw, "unet/config.json")


def test_config_of_another_class_is_refused():
    with pytest.raises(CheckpointError, match="`_class_name` is 'AutoencoderKL', but nodegraph supports "
                                              "'UNet2DModel'"):
        parse_config(UNet2DConfig, reference_configs()["SD14_VAE"])


def test_block_lists_must_agree_in_length():
    raw = dict(reference_configs()["DDPM_CAT_256_UNET"], up_block_types=["UpBlock2D"])
    with pytest.raises(CheckpointError, match=r"`up_block_types` is \('UpBlock2D',\), but nodegraph supports one "
                                              r"entry per block_out_channels entry \(6\)"):
        parse_config(UNet2DConfig, raw)
