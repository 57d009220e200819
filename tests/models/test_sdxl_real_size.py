"""SDXL base 1.0 and refiner 1.0 UNets built from their real configs, on the meta device (no weights, no memory),
have diffusers' module tree and state dict, key for key and shape for shape; the configs are in
data/reference/sdxl-configs.json."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_checkpoints import DATA

from nodegraph.models.unet_2d_condition import UNet2DConditionModel


def sdxl_configs() -> dict:
    return json.loads((DATA / "reference" / "sdxl-configs.json").read_text())


def weighted_modules(model: torch.nn.Module) -> dict[str, tuple[str, tuple]]:
    """Every module that holds parameters: its torch layer kind and its parameters' names and shapes."""
    kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    tree = {}
    for name, module in model.named_modules():
        own = tuple((n, tuple(p.shape)) for n, p in module.named_parameters(recurse=False))
        if own:
            kind = next((k.__name__ for k in kinds if isinstance(module, k)), type(module).__name__)
            tree[name] = (kind, own)
    return tree


@pytest.mark.parametrize("name", ["SDXL_BASE_UNET", "SDXL_REFINER_UNET"])
def test_real_sdxl_unet_config_builds_diffusers_module_tree_and_state_dict(name):
    import diffusers

    config = sdxl_configs()[name]
    with torch.device("meta"):
        ours = UNet2DConditionModel.from_config(config)
        theirs = diffusers.UNet2DConditionModel.from_config(config)
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert len(expected) > 1000
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert weighted_modules(ours) == weighted_modules(theirs)
    assert ours.add_embedding.linear_1.in_features == config["projection_class_embeddings_input_dim"]
