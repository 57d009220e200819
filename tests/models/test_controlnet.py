"""The native ControlNetModel against diffusers': same residuals on tiny random models (SD-like, SDXL-like, BGR and
pooled variants), the real SD1.5 and SDXL ControlNet architectures on the meta device, and strict loading."""

from __future__ import annotations

import json

import pytest
import torch
from test_sdxl_real_size import sdxl_configs, weighted_modules
from tiny_checkpoints import perturbed, reference_configs

from nodegraph.models.controlnet import ControlNetModel, load_controlnet, parse_controlnet_config
from nodegraph.models.errors import CheckpointError

SD_LIKE = dict(block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
               layers_per_block=1, attention_head_dim=2, cross_attention_dim=16, norm_num_groups=8,
               conditioning_embedding_out_channels=(8, 16))
SDXL_LIKE = dict(block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 layers_per_block=1, attention_head_dim=(1, 2), transformer_layers_per_block=(1, 2),
                 use_linear_projection=True, cross_attention_dim=24, norm_num_groups=8,
                 addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=56,
                 conditioning_embedding_out_channels=(8, 16, 16))
CASES = {"sd": SD_LIKE, "sdxl": SDXL_LIKE,
         "bgr_pooled": dict(SD_LIKE, controlnet_conditioning_channel_order="bgr", global_pool_conditions=True)}


def saved_controlnet(tmp_path, config: dict, seed: int = 0):
    from diffusers import ControlNetModel as DiffusersControlNet

    torch.manual_seed(seed)
    theirs = perturbed(DiffusersControlNet(**config), seed)
    theirs.save_pretrained(tmp_path / "cn")
    return theirs, tmp_path / "cn"


@pytest.mark.parametrize("case", sorted(CASES))
def test_controlnet_residuals_match_diffusers(tmp_path, case):
    config = CASES[case]
    theirs, folder = saved_controlnet(tmp_path, config)
    ours = load_controlnet(folder)
    g = torch.Generator().manual_seed(1)
    shrink = 2 ** (len(config["conditioning_embedding_out_channels"]) - 1)
    x = torch.randn(2, 4, 4, 6, generator=g)  # non-square latents
    context = torch.randn(2, 7, config["cross_attention_dim"], generator=g)
    image = torch.rand(2, 3, 4 * shrink, 6 * shrink, generator=g)
    added = {}
    if case == "sdxl":
        added = {"text_embeds": torch.randn(2, 8, generator=g), "time_ids": torch.tensor([[8., 12, 0, 0, 8, 12]] * 2)}
    with torch.no_grad():
        down, mid = theirs(x, 500, context, image, conditioning_scale=0.7, added_cond_kwargs=added or None,
                           return_dict=False)
        our_down, our_mid = ours(x, 500, context, image, 0.7, **added)
    assert len(our_down) == len(down) == 1 + 2 + 1  # conv_in, (resnet, downsampler), resnet
    for a, b in zip(our_down, down):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_mid, mid, atol=1e-5, rtol=1e-5)
    assert mid.abs().mean() > 1e-2  # perturbed zero convolutions: the residuals are not zero


def controlnet_config_from_unet(unet_config: dict, **extra) -> dict:
    """A ControlNet config as `ControlNetModel.from_unet` writes it: the UNet's encoder settings."""
    import inspect

    from diffusers import ControlNetModel as DiffusersControlNet

    keys = set(inspect.signature(DiffusersControlNet.__init__).parameters)
    return {**{k: v for k, v in unet_config.items() if k in keys}, "_class_name": "ControlNetModel", **extra}


@pytest.mark.parametrize("name", ["sd15", "sdxl"])
def test_real_size_controlnet_builds_diffusers_module_tree_on_meta(name):
    from diffusers import ControlNetModel as DiffusersControlNet

    unet = reference_configs()["SD14_UNET"] if name == "sd15" else sdxl_configs()["SDXL_BASE_UNET"]
    config = controlnet_config_from_unet(unet)
    with torch.device("meta"):
        ours = ControlNetModel(parse_controlnet_config(config))
        theirs = DiffusersControlNet.from_config(config)
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert len(expected) > 300
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert weighted_modules(ours) == weighted_modules(theirs)


def test_controlnet_with_a_missing_weight_is_refused_naming_the_key(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = saved_controlnet(tmp_path, SD_LIKE)
    weights = folder / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    del tensors["controlnet_mid_block.weight"]
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match="controlnet_mid_block.weight"):
        load_controlnet(folder)


def test_a_unet_folder_is_not_a_controlnet(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError, match="not a ControlNetModel"):
        load_controlnet(tmp_path)
