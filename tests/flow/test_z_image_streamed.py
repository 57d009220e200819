"""graphs/z_image.yaml under a memory budget below the transformer's size: the transformer is streamed from its
file (models/streaming.py: pages given back after each block) and the image is the unbudgeted one, bit for bit."""

from __future__ import annotations

import torch

from nodegraph import RunMode, run_graph

SETTINGS = dict(prompt="a red fox in the snow", steps=2, width=32, height=32)


def test_a_budget_streams_the_transformer_and_keeps_the_pixels(tiny_z_image, monkeypatch):
    from nodegraph.memory import usage
    from nodegraph.models import streaming

    inputs = {"model": str(tiny_z_image), **SETTINGS}
    free = run_graph("graphs/z_image.yaml", inputs=inputs, mode=RunMode(device="cpu"))["image"]
    streamed = []
    real = streaming.install_streamed
    monkeypatch.setattr(streaming, "install_streamed", lambda model, *a, **k: streamed.append(type(model).__name__)
                        or real(model, *a, **k))
    monkeypatch.setattr(usage, "headroom", lambda device, limit: 1 << 10)  # as if the budget were nearly spent
    out = run_graph("graphs/z_image.yaml", inputs=inputs, mode=RunMode(device="cpu", max_memory=8 << 30))["image"]
    assert "ZImageTransformer2DModel" in streamed
    assert torch.equal(out, free)
