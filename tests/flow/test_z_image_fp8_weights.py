"""graphs/z_image.yaml in a run whose mode holds the denoiser as fp8 (`nodegraph run --weights fp8`): the
transformer's Linear weights become float8 while loading (upcast per layer), the text encoder and VAE keep the
run's dtype, and the image stays near the fp32 one."""

from __future__ import annotations

import torch

from nodegraph import RunMode, run_graph
from tests.graphs.tiny_pipelines import png_pixels

SETTINGS = dict(prompt="a cat on a table", steps=2, width=48, height=32)


def test_fp8_weights_hold_the_transformer_as_float8_and_stay_near_the_fp32_image(tiny_z_image, monkeypatch):
    from nodegraph.models import fp8

    held = []
    real = fp8.install_fp8
    monkeypatch.setattr(fp8, "install_fp8", lambda model, *a, **k: held.append(
        (type(model).__name__, k.get("store"))) or real(model, *a, **k))
    inputs = {"model": str(tiny_z_image), **SETTINGS}
    plain = png_pixels(run_graph("graphs/z_image.yaml", inputs=inputs, mode=RunMode(device="cpu"))["image"]).int()
    assert held == []
    out = run_graph("graphs/z_image.yaml", inputs=inputs, mode=RunMode(device="cpu", weights="fp8"))["image"]
    assert held == [("ZImageTransformer2DModel", "fp8_e4m3fn")]
    diff = (png_pixels(out).int() - plain).abs().max()
    # measured 12/255 on this random model (fp8's rounding of the weights; random weights are a hard case)
    assert 0 < diff <= 24, diff
    assert torch.is_tensor(out)
