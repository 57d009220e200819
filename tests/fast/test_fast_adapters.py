"""A ControlNet and a VAE override loaded for a fast run are prepared like the checkpoint's own UNet and VAE: they
run on packed kernels, and the image stays within 2/255 of the default one (fp32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodegraph import RunOptions, load_graph
from nodegraph.core.context import ComponentCache
from nodegraph.fast.conv import FastConv2d

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


@pytest.fixture(scope="module")
def controlnet_and_image(tiny_sd, tmp_path_factory):
    from tests.graphs.tiny_controlnet import save_pattern, save_tiny_controlnet

    root = tmp_path_factory.mktemp("fast-control")
    return save_tiny_controlnet(tiny_sd, root / "cn", 11), save_pattern(root / "edges.png", 24, 16, 1)


def _run(graph: str, fast: bool, **inputs):
    components = ComponentCache()
    out = load_graph(GRAPHS / graph).run(RunOptions(device="cpu", dtype="fp32", fast=fast, components=components),
                                         prompt="a red cube", steps=3, seed=3, **inputs)
    return (out["image"].clamp(0, 1) * 255).round().to(torch.int16), components


def _ran_packed(components: ComponentCache, kind: str, part: str = "") -> bool:
    """Whether the cached model of this kind was prepared for fast mode and every conv of `part` (a submodule's
    name; all by default) ran on its packed kernel."""
    (model,) = [v for k, v in components._items.items() if k[0] == kind]
    convs = [m for m in model.get_submodule(part).modules() if isinstance(m, FastConv2d)]
    return bool(convs) and all("_packed_cache" in m.__dict__ for m in convs)


def test_a_controlnet_in_a_fast_run_runs_packed_and_stays_within_2_of_255(tiny_sd, controlnet_and_image):
    controlnet, image = controlnet_and_image
    inputs = dict(model=str(tiny_sd), controlnet=str(controlnet), image=str(image), controlnet_scale=1.0)
    default, plain_components = _run("controlnet.yaml", False, **inputs)
    fast, components = _run("controlnet.yaml", True, **inputs)
    assert _ran_packed(components, "controlnet") and not _ran_packed(plain_components, "controlnet")
    assert (default - fast).abs().max().item() <= 2
    without, _ = _run("controlnet.yaml", True, **dict(inputs, controlnet_scale=0.0))
    assert (without - fast).abs().max().item() > 20  # the ControlNet shapes this image: the check above has teeth


def test_a_vae_override_in_a_fast_run_runs_packed_and_stays_within_2_of_255(tiny_sd):
    inputs = dict(model=str(tiny_sd), vae=str(tiny_sd / "vae"), height=32, width=32)
    default, _ = _run("stable_diffusion.yaml", False, **inputs)
    fast, components = _run("stable_diffusion.yaml", True, **inputs)
    assert _ran_packed(components, "vae-override", "decoder")  # text to image: the encoder never runs
    assert (default - fast).abs().max().item() <= 2
