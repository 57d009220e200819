"""nodegraph's Conv2d / GroupNorm / LayerNorm call the aten op directly (models/base.py): the same numbers as
torch's modules, and the inputs torch's Python checks refuse are still refused."""

import pytest
import torch
from torch import nn

from nodegraph.models.base import Conv2d, GroupNorm, LayerNorm


def _twin(ours: nn.Module, theirs: nn.Module) -> None:
    theirs.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, "same")])
def test_conv2d_gives_torchs_bits(dtype, kernel, stride, padding):
    torch.manual_seed(0)
    ours = Conv2d(8, 16, kernel, stride=stride, padding=padding).to(dtype)
    theirs = nn.Conv2d(8, 16, kernel, stride=stride, padding=padding).to(dtype)
    _twin(ours, theirs)
    x = torch.randn(2, 8, 9, 9, dtype=dtype)
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x))


def test_conv2d_with_reflect_padding_still_pads():
    ours, theirs = Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
    _twin(ours, theirs)
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        assert not torch.equal(ours(x), nn.functional.conv2d(x, ours.weight, ours.bias, padding=1))  # sensitive


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 32, 8, 8), (1, 32, 5), (2, 32, 3, 4, 2)])
def test_group_norm_gives_torchs_bits(dtype, shape):
    ours, theirs = GroupNorm(8, 32, eps=1e-6).to(dtype), nn.GroupNorm(8, 32, eps=1e-6).to(dtype)
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    _twin(ours, theirs)
    x = torch.randn(*shape, dtype=dtype)
    assert torch.equal(ours(x), theirs(x))


def test_group_norm_refuses_what_torch_refuses():
    norm = GroupNorm(4, 4)
    with pytest.raises(ValueError, match="more than 1 value"):
        norm(torch.randn(1, 4, 1, 1))  # one value a group
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        norm(torch.randn(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_norm_gives_torchs_bits(dtype):
    ours, theirs = LayerNorm(32).to(dtype), nn.LayerNorm(32).to(dtype)
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    _twin(ours, theirs)
    x = torch.randn(2, 16, 32, dtype=dtype)
    assert torch.equal(ours(x), theirs(x))
