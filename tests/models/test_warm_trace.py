"""models/warm_trace.py: a model called many times with the same shapes, each call short, runs from a trace with
the eager bits, and runs eagerly again whenever the model is no longer what was traced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import nodegraph
from nodegraph.core import RunContext, RunMode
from nodegraph.models import warm_trace
from nodegraph.models.unet_2d_condition import UNet2DConditionModel
from nodegraph.nodes.unet import UNetStep

DIGITS = Path(nodegraph.__file__).parent / "builtin" / "digits"


@pytest.fixture
def soon(monkeypatch):
    """Trace from the third call on (a warm server reaches the real threshold in its fourth 25-step run), however
    slow the machine is today."""
    monkeypatch.setattr(warm_trace, "TRACE_AFTER_CALLS", 3)
    monkeypatch.setattr(warm_trace, "SHORT_CALL_SECONDS", float("inf"))


@pytest.fixture(scope="module")
def unet():
    config = json.loads((DIGITS / "unet" / "config.json").read_text())
    return UNet2DConditionModel.from_config(config).eval().requires_grad_(False)


def step(unet, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """UNetStep's output on the k-th latents and timestep, and the UNet's own under no_grad on the same."""
    gen = torch.Generator().manual_seed(k)
    latents, embeddings = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(2, 77, 64, generator=gen)
    t = torch.tensor(999 - 37 * k)
    ctx = RunContext(mode=RunMode(device="cpu"))
    out = UNetStep().run(UNetStep.Inputs(unet=unet, latents=latents, t=t, embeddings=embeddings), ctx)["noise_pred"]
    with torch.no_grad():
        return out, unet(torch.cat([latents, latents]), t, encoder_hidden_states=embeddings)


def only_entry(model) -> "warm_trace._Entry":
    (entry,) = warm_trace._entries(model).values()
    return entry


def test_a_unet_step_called_often_runs_from_a_trace_with_the_eager_bits(soon, unet):
    for k in range(8):
        out, eager = step(unet, k)
        assert torch.equal(out, eager), k
    entry = only_entry(unet)
    assert entry.traced is not None and not entry.dropped
    assert entry.traced.verified == warm_trace.VERIFY_CALLS
    assert entry.calls == 3  # the five later calls ran from the trace (eager calls are counted)


def test_a_changed_model_runs_eagerly_and_the_trace_comes_back_when_it_is_undone(soon, unet):
    for k in range(6):
        step(unet, k)
    entry = only_entry(unet)
    calls = entry.calls
    seen = []
    handle = unet.down_blocks[0].register_forward_pre_hook(lambda module, args: seen.append(1))  # a cancel check
    out, eager = step(unet, 10)
    assert seen == [1, 1] and torch.equal(out, eager)  # the hook ran in the step's call (and in the eager twin's)
    handle.remove()
    step(unet, 11)
    assert entry.calls == calls + 1  # only the hooked call ran eagerly

    old = unet.conv_out.weight
    unet.conv_out.weight = nn.Parameter(old * 2, requires_grad=False)  # a weight replaced (a LoRA copy)
    try:
        out, eager = step(unet, 12)
        assert torch.equal(out, eager)
        unet.conv_out.weight = old
        assert not torch.equal(out, step(unet, 12)[1])  # the replaced weight mattered
    finally:
        unet.conv_out.weight = old

    class Doubled(type(unet.conv_out)):
        def forward(self, x):
            return super().forward(x) * 2

    unet.conv_out.__class__ = Doubled  # a class swap (fp8, streamed LoRA, fast mode do this)
    try:
        out, eager = step(unet, 13)
        assert torch.equal(out, eager)
    finally:
        unet.conv_out.__class__ = Doubled.__mro__[1]
    assert not torch.equal(out, step(unet, 13)[1])


class Branchy(nn.Module):
    """A forward whose Python branch depends on the data: a trace would freeze the branch it saw."""

    def forward(self, x):
        return x * 2 if bool(x.sum() > 0) else x * 3


def test_a_forward_that_branches_on_the_data_is_caught_while_verifying_and_stays_eager(soon, monkeypatch):
    monkeypatch.setattr(warm_trace, "TRACE_AFTER_CALLS", 2)
    model, ones = Branchy(), torch.ones(3)
    with torch.inference_mode():
        outs = [warm_trace.call(model, sign * ones) for sign in (1, 1, -1, -1, 1, -1)]
    assert [o[0].item() for o in outs] == [2, 2, -3, -3, 2, -3]
    entry = only_entry(model)
    assert entry.dropped and entry.traced is None and entry.calls == 5


class OutsideWeight(nn.Module):
    """A weight held outside the module's parameters (as a layer read from a file at call time)."""

    def __init__(self):
        super().__init__()
        self.table = torch.randn(512, 1024)

    def forward(self, x):
        return x @ self.table


def test_a_weight_outside_the_module_tensors_is_never_frozen_into_a_trace(soon, monkeypatch):
    monkeypatch.setattr(warm_trace, "TRACE_AFTER_CALLS", 1)
    model, x = OutsideWeight(), torch.randn(2, 512)
    with torch.inference_mode():
        for _ in range(3):
            assert torch.equal(warm_trace.call(model, x), x @ model.table)
        model.table = torch.randn(512, 1024)
        assert torch.equal(warm_trace.call(model, x), x @ model.table)
    assert only_entry(model).dropped


def test_long_calls_and_calls_with_autograd_stay_eager(monkeypatch):
    monkeypatch.setattr(warm_trace, "TRACE_AFTER_CALLS", 1)
    monkeypatch.setattr(warm_trace, "SHORT_CALL_SECONDS", 0.0)
    model = nn.Linear(4, 4)
    with torch.inference_mode():
        for _ in range(3):
            warm_trace.call(model, torch.ones(4))
    assert only_entry(model).traced is None
    grad = nn.Linear(4, 4)
    warm_trace.call(grad, torch.ones(4)).sum().backward()  # no inference mode: autograd needs the eager graph
    assert grad.weight.grad is not None and not warm_trace._entries(grad)


def test_a_traced_model_is_freed_when_nothing_else_holds_it(soon):
    import gc
    import weakref

    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8)).requires_grad_(False)
    with torch.inference_mode():
        for _ in range(6):
            warm_trace.call(model, torch.ones(2, 8))
    assert only_entry(model).traced.verified == warm_trace.VERIFY_CALLS
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None  # a server's model cache lets a model go: its trace must not keep its weights
