"""DeepCache (Ma et al. 2023) as written out in graphs/sd_denoise_step.yaml: the shallow branch with the deep
features of the same input gives the full UNet's output; with `cache_interval: 1` the image is the uncached one
bit for bit; with N > 1 the UNet runs in full on every N-th step only (counted at the model), the image moves,
and the run reports the reuse through executor events. diffusers has no DeepCache for UNets, so the oracle is
the full computation itself."""

from __future__ import annotations

import io

import pytest
import torch

from tests.graphs.tiny_pipelines import REPO, png_pixels

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
SETTINGS = dict(prompt="a photo of a cat", seed=7, steps=6, guidance_scale=7.5, height=16, width=16, scheduler="euler")


@pytest.fixture(scope="module")
def unet(tiny_sd):
    from nodegraph.models.loading import load_component

    return load_component(str(tiny_sd), "unet")


def _inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)


def test_shallow_branch_on_its_own_features_gives_the_full_output(unet):
    from nodegraph.models.deepcache import full_forward, shallow_forward

    x, context = _inputs(0)
    t = torch.tensor(601)
    with torch.no_grad():
        full, deep = full_forward(unet, x, t, context)
        assert torch.equal(full, unet(x, t, encoder_hidden_states=context)), "the full step is the plain forward"
        assert deep.shape == (2, 64, 8, 8)  # the upsampled state of the block above, before its skip
        torch.testing.assert_close(shallow_forward(unet, x, t, context, deep), full, atol=1e-5, rtol=1e-5)
        _, other = full_forward(unet, *_inputs(1)[:1], torch.tensor(201), context)
        assert not torch.allclose(shallow_forward(unet, x, t, context, other), full, atol=1e-3)


def run(report=None, **inputs):
    from nodegraph import run_graph

    hooks = [] if report is None else [report]
    return png_pixels(run_graph(SD_GRAPH, inputs=inputs, device="cpu", hooks=hooks)["image"])


def test_interval_one_is_the_uncached_image(tiny_sd):
    plain = run(model=str(tiny_sd), **SETTINGS)
    assert torch.equal(run(model=str(tiny_sd), cache="deepcache", cache_interval=1, **SETTINGS), plain)


def test_deepcache_runs_the_whole_unet_every_nth_step_and_reports_it(tiny_sd, monkeypatch):
    from nodegraph.exec.step_cache_report import StepCacheReport
    from nodegraph.models.unet_2d_condition import UNet2DConditionModel

    full_calls = []
    forward = UNet2DConditionModel.forward
    monkeypatch.setattr(UNet2DConditionModel, "forward",
                        lambda self, *a, **k: full_calls.append(1) or forward(self, *a, **k))
    out = io.StringIO()
    report = StepCacheReport(file=out)
    cached = run(report, model=str(tiny_sd), cache="deepcache", cache_interval=3, **SETTINGS)
    assert len(full_calls) == 2, "steps 0 and 3 of 6"
    assert report.counts == {("step/predict", "deepcache"): (4, 6)}
    assert out.getvalue() == "step cache step/predict: deepcache reused 4 of 6 steps (2 full model calls)\n"
    monkeypatch.setattr(UNet2DConditionModel, "forward", forward)
    plain = run(model=str(tiny_sd), **SETTINGS)
    assert (cached.int() - plain.int()).abs().max().item() > 0, "reused features must change the image"


def test_no_cache_reports_nothing(tiny_sd):
    from nodegraph.exec.step_cache_report import StepCacheReport

    out = io.StringIO()
    run(StepCacheReport(file=out), model=str(tiny_sd), **dict(SETTINGS, steps=2))
    assert out.getvalue() == ""


def test_nodegraph_run_verbose_reports_the_reused_steps(tiny_sd, tmp_path):
    import subprocess
    import sys

    sets = dict(model=tiny_sd, steps=4, scheduler="euler", height=16, width=16, cache="deepcache", cache_interval=2)
    done = subprocess.run([sys.executable, "-m", "nodegraph.cli", "run", SD_GRAPH, "-v", "--out", tmp_path,
                           *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "step cache step/predict: deepcache reused 2 of 4 steps (2 full model calls)" in done.stderr
