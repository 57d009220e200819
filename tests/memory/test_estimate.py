"""The plan's memory estimate (memory/estimate.py): sizes from file headers equal the loaded models' sizes, and
nothing is loaded to compute them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodegraph import load_graph
from nodegraph.exec.memory_plan import estimate_run
from nodegraph.memory.estimate import BASELINE

GRAPHS = Path(__file__).parents[2] / "graphs"


def _loaded_bytes(component: str, dtype) -> int:
    from nodegraph.models.loading import load_component

    model = load_component("builtin:digits", component, dtype=dtype)
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


@pytest.mark.parametrize("size", [4, 2], ids=["fp32", "fp16"])
def test_component_sizes_from_headers_equal_the_loaded_models(size):
    import torch

    estimate = estimate_run(load_graph(GRAPHS / "stable_diffusion.yaml"), {"model": "builtin:digits"}, size)
    sizes = {c.component: c.bytes for c in estimate.components}
    assert all(0 < c.largest_layer < c.bytes for c in estimate.components)
    assert set(sizes) == {"unet", "vae", "text_encoder"}
    dtype = torch.float32 if size == 4 else torch.float16
    loaded = {name: _loaded_bytes(name, dtype) for name in sizes}
    # equal but for buffers a model makes itself (the text encoder's 616-byte position ids)
    assert sizes == pytest.approx(loaded, rel=1e-4) and sizes["unet"] == loaded["unet"]


def test_the_estimate_loads_nothing_and_sums_what_is_held_at_once(monkeypatch):
    from nodegraph.models import loading

    monkeypatch.setattr(loading, "load_component", lambda *a, **k: pytest.fail("a model was loaded"))
    estimate = estimate_run(load_graph(GRAPHS / "sdxl.yaml"), {"model": "builtin:digits"}, 4)
    held = {c.component: c.held for c in estimate.components}
    # the text encoder is freed once the prompts are encoded, before the UNet and VAE are loaded
    assert held["text_encoder"][1] < held["unet"][0] and held["text_encoder"][1] < held["vae"][0]
    by_name = {c.component: c.bytes for c in estimate.components}
    assert estimate.peak == BASELINE + max(by_name["text_encoder"], by_name["unet"] + by_name["vae"])
    assert estimate.unknown == ["clip.text_encoder_2 (builtin:digits)"]  # digits has one text encoder
    assert "peak" in "\n".join(estimate.lines())
