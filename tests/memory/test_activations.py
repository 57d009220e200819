"""Activations in the plan's estimate and in the least budget (memory/activations.py): the VAE pass at the
graph's image size is counted before anything loads, and a budget the weights fit but the tiled decode does not
is refused at plan time with a minimum that counts it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nodegraph import RunMode, load_graph, run_graph
from nodegraph.exec.memory_plan import estimate_run, minimum_budget
from nodegraph.memory.budget import BudgetError
from nodegraph.memory.estimate import peak

GRAPHS = Path(__file__).parents[2] / "graphs"


def _values(size: int) -> dict:
    return {"model": "builtin:digits", "prompt": "7", "steps": 1, "seed": 3, "height": size, "width": size}


@pytest.fixture(autouse=True)
def vae_alone(monkeypatch):
    """These tests are about the VAE pass: the denoiser's activations (tests/memory/test_denoiser_activations.py)
    are left out of the plan here, so the decode is the largest work, as it is on real-size models."""
    from nodegraph.exec import memory_plan

    monkeypatch.setattr(memory_plan, "_denoiser_ticks", lambda steps: iter(()))


@pytest.fixture(scope="module")
def graph():
    return load_graph(GRAPHS / "stable_diffusion.yaml")


def test_the_decode_is_counted_at_the_graphs_image_size(graph):
    small, large = (estimate_run(graph, _values(s)) for s in (64, 2048))
    for estimate in (small, large):
        assert [estimate.ticks[i] for i in estimate.work] == ["decode"]  # the VAE pass's step, and only it
    (work_small,), (work_large,) = small.work.values(), large.work.values()
    assert work_large > 200 * work_small  # 1024× the pixels: the activations grow with the image, not the weights
    assert large.peak > small.peak and large.peak_step == "decode"
    weights_only = peak(large.ticks, large.components, lambda c: c.bytes)[0]
    assert large.peak > weights_only
    tiled = estimate_run(graph, _values(2048), tiled=True)
    assert 0 < tiled.work[next(iter(tiled.work))] < work_large  # the exact tiled pass holds less


def test_a_budget_the_weights_fit_but_the_tiled_decode_does_not_is_refused_before_anything_loads(graph, monkeypatch):
    from nodegraph.models import loading

    least, estimate = minimum_budget(graph, _values(2048))
    weights_only = peak(estimate.ticks, estimate.components, lambda c: c.largest_layer if c.component in
                        ("unet", "vae") else c.bytes)[0]
    assert least > weights_only + (64 << 20)
    monkeypatch.setattr(loading, "load_component", lambda *a, **k: pytest.fail("a model was loaded"))
    budget = (least + weights_only) // 2
    with pytest.raises(BudgetError, match="tiled VAE pass") as error:
        run_graph(graph, _values(2048), mode=RunMode(device="cpu", max_memory=budget))
    given = int(re.search(r"Give --max-memory (\d+)MB or more", str(error.value))[1]) << 20
    assert least <= given < least + (1 << 20)  # the smallest budget that works, rounded up to a megabyte



def test_the_reports_estimate_follows_the_plan_the_budget_makes(graph):
    """Without a budget the -v report's estimate is the plan's (untiled decode, models whole); with the least
    budget the plan streams the UNet and tiles the decode, so its estimate comes down to about the least budget
    (the 3.6 MB VAE fits beside the streamed UNet when it loads, so it is not streamed: 0.5 % over the least)."""
    import torch

    from nodegraph.exec.memory_plan import planned_peak

    cpu = torch.device("cpu")
    values = _values(2048)
    assert planned_peak(graph, values, RunMode(device="cpu"), cpu) == estimate_run(graph, values).peak
    least, _ = minimum_budget(graph, values)
    planned = planned_peak(graph, values, RunMode(device="cpu", max_memory=least), cpu)
    assert least <= planned <= least * 1.01 and planned < 0.7 * estimate_run(graph, values).peak
    roomy = planned_peak(graph, values, RunMode(device="cpu", max_memory=64 << 30), cpu)
    assert roomy == estimate_run(graph, values).peak  # a budget everything fits changes nothing
