"""ControlNets saved as one file in the original layout (`control_model.*`) load to the same model as the
diffusers folder they were written from; diffusers' own `from_single_file` vouches for the test's writer."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file
from test_controlnet import SD_LIKE, saved_controlnet

from nodegraph.models.controlnet import load_controlnet

# diffusers' converter knows only the real hint block (16, 32, 96, 256): indices 2…12 are blocks, 14 conv_out
STANDARD_HINT = dict(SD_LIKE, conditioning_embedding_out_channels=(16, 32, 96, 256))
from nodegraph.models.errors import CheckpointError
from tests.models.single_file.ldm_layout import unet_to_ldm


def controlnet_to_original(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """diffusers ControlNetModel state dict → lllyasviel's `control_model.*` names (hint block: convs at even
    indices, SiLUs between them)."""
    blocks = 1 + max(int(m[1]) for k in state if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k)))
    out, encoder = {}, {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        if head == "controlnet_cond_embedding.conv_in":
            out[f"input_hint_block.0.{leaf}"] = value
        elif m := re.match(r"^controlnet_cond_embedding\.blocks\.(\d+)$", head):
            out[f"input_hint_block.{2 * int(m[1]) + 2}.{leaf}"] = value
        elif head == "controlnet_cond_embedding.conv_out":
            out[f"input_hint_block.{2 * blocks + 2}.{leaf}"] = value
        elif m := re.match(r"^controlnet_down_blocks\.(\d+)$", head):
            out[f"zero_convs.{m[1]}.0.{leaf}"] = value
        elif head == "controlnet_mid_block":
            out[f"middle_block_out.0.{leaf}"] = value
        else:
            encoder[key] = value
    for key, value in unet_to_ldm(encoder, layers_per_block).items():
        out[key.removeprefix("model.diffusion_model.")] = value
    return {"control_model." + k: v.contiguous() for k, v in out.items()}


def test_original_layout_file_loads_the_same_controlnet(tmp_path):
    from diffusers import ControlNetModel

    theirs, folder = saved_controlnet(tmp_path, STANDARD_HINT)
    path = tmp_path / "control_tiny.safetensors"
    save_file(controlnet_to_original(theirs.state_dict(), layers_per_block=1), path)
    # the writer is right: diffusers reads the file back into the same tensors
    again = ControlNetModel.from_single_file(path, config=str(folder), local_files_only=True)
    for key, value in theirs.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key

    ours = load_controlnet(path, config=str(folder))
    assert {k: v for k, v in ours.state_dict().items()}.keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_a_file_that_is_not_a_controlnet_says_so(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="is not a ControlNet"):
        load_controlnet(path)


def test_a_file_with_a_missing_zero_conv_names_it(tmp_path):
    theirs, folder = saved_controlnet(tmp_path, STANDARD_HINT)
    tensors = controlnet_to_original(theirs.state_dict(), layers_per_block=1)
    del tensors["control_model.zero_convs.2.0.weight"]
    save_file(tensors, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError, match="controlnet_down_blocks.2.weight"):
        load_controlnet(tmp_path / "broken.safetensors", config=str(folder))


@pytest.mark.parametrize("name", ["sd15", "sdxl"])
def test_real_size_original_layout_is_recognised_without_a_config(name):
    """The real SD1.5 / SDXL ControlNet architectures (diffusers, on the meta device) written in the original
    layout: the config is inferred from the keys (family by text width, hint widths from the file) and every
    tensor is planned with its shape."""
    from diffusers import ControlNetModel
    from test_controlnet import controlnet_config_from_unet
    from test_sdxl_real_size import sdxl_configs
    from tiny_checkpoints import reference_configs

    from nodegraph.models.adapters.controlnet import planned_controlnet

    unet = reference_configs()["SD14_UNET"] if name == "sd15" else sdxl_configs()["SDXL_BASE_UNET"]
    with torch.device("meta"):
        theirs = ControlNetModel.from_config(controlnet_config_from_unet(unet))
    original = controlnet_to_original(theirs.state_dict(), layers_per_block=2)
    assert "control_model.input_hint_block.14.weight" in original and len(original) > 300
    model, plan = planned_controlnet({k: tuple(v.shape) for k, v in original.items()}, f"{name}.safetensors")
    assert sorted(plan) == sorted(theirs.state_dict())
    assert model.config.addition_embed_type == ("text_time" if name == "sdxl" else None)
