"""Fast mode is refused where it cannot help (non-CPU devices) or cannot run (a torch without its oneDNN ops),
with a clear message and before any model loads."""

import types

import pytest
import torch

from nodegraph.core.context import DeviceError
from nodegraph.fast import support


def test_the_cpu_with_this_torch_is_supported():
    assert support.missing_ops() == []
    support.check_supported("cpu")


def test_a_non_cpu_device_is_refused_with_what_to_do_instead():
    with pytest.raises(DeviceError) as caught:
        support.check_supported("meta")
    message = str(caught.value)
    assert "CPU runs only" in message and "Drop `--fast`" in message and "--device cpu" in message


def test_a_torch_without_the_oneDNN_ops_is_refused_naming_them(monkeypatch):
    present = {name: getattr(torch.ops.mkldnn, name) for name in support.REQUIRED_OPS}
    fake = types.SimpleNamespace(**{k: v for k, v in present.items() if k != "_linear_pointwise"})
    monkeypatch.setattr(torch.ops, "mkldnn", fake)
    assert support.missing_ops() == ["_linear_pointwise"]
    with pytest.raises(DeviceError, match="_linear_pointwise.*constraints.txt"):
        support.check_supported("cpu")


def test_a_fast_load_on_another_device_is_refused_before_the_model_loads():
    from nodegraph.nodes.loaders import get_or_load_model

    loads = []
    ctx = types.SimpleNamespace(fast=True, device=torch.device("meta"),
                                components=types.SimpleNamespace(get_or_load=lambda key, load: load()))
    with pytest.raises(DeviceError, match="fast mode"):
        get_or_load_model(ctx, ("unet",), lambda: loads.append(1))
    assert loads == []  # no model loaded, so no second (fast) copy either
