"""Fast mode's packed layers: the same results as torch's layers (to bf16 rounding) at any batch size, and a
weight changed in place or replaced (LoRA) is repacked, never served stale."""

from __future__ import annotations

import copy

import torch

from nodegraph.fast.conv import FastConv2d
from nodegraph.fast.linear import FastLinear
from nodegraph.models.base import Conv2d, Linear


def _swapped(plain: torch.nn.Module, fast_class: type) -> torch.nn.Module:
    """A copy of `plain` as `fast_class`, as nodegraph.fast.prepare swaps layers (the same parameters)."""
    fast = copy.deepcopy(plain)
    fast.__class__ = fast_class
    return fast


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2)


def test_packed_linear_matches_torch_at_other_row_counts_and_follows_weight_changes():
    torch.manual_seed(0)
    plain = Linear(24, 40).bfloat16().eval()
    fast = _swapped(plain, FastLinear)
    with torch.no_grad():
        for shape in [(8, 24), (2, 3, 24), (20, 24)]:  # packed for the first, used for all
            x = torch.randn(shape).bfloat16()
            assert _close(fast(x), plain(x)) and fast(x).shape == plain(x).shape
        x = torch.randn(5, 24).bfloat16()
        fast.weight.mul_(-1)
        plain.weight.mul_(-1)
        assert _close(fast(x), plain(x))
        lora = copy.copy(fast)  # what LoRA's copy-on-write does: same class, a new weight object
        lora._parameters = dict(fast._parameters, weight=torch.nn.Parameter(fast.weight * 2, requires_grad=False))
        assert _close(lora(x), torch.nn.functional.linear(x, fast.weight * 2, fast.bias))
        assert _close(fast(x), plain(x))  # the original keeps its own packed weight


def test_packed_conv_matches_torch_on_both_layouts_and_follows_weight_changes():
    torch.manual_seed(0)
    plain = Conv2d(8, 16, 3, padding=1).eval()
    fast = _swapped(plain, FastConv2d)
    with torch.no_grad():
        for size in (6, 9):
            x = torch.randn(2, 8, size, size)
            torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
            assert fast(x).is_contiguous(memory_format=torch.channels_last)
        fast.weight.add_(1.0)
        plain.weight.add_(1.0)
        x = torch.randn(1, 8, 5, 7)
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)


def test_resnet_block_with_the_residual_fused_into_its_last_conv_matches_the_plain_block():
    from nodegraph.fast import prepare
    from nodegraph.fast.resnet import FastResnetBlock2D
    from nodegraph.models.resnet import ResnetBlock2D

    torch.manual_seed(0)
    for c_in in (8, 16):  # identity shortcut, conv shortcut
        plain = ResnetBlock2D(c_in, 16, temb_channels=12, groups=4, eps=1e-5).eval()
        fast = prepare(torch.nn.Sequential(copy.deepcopy(plain)))[0]
        assert type(fast) is FastResnetBlock2D
        x, temb = torch.randn(2, c_in, 6, 5), torch.randn(2, 12)
        with torch.no_grad():
            torch.testing.assert_close(fast(x, temb), plain(x, temb), rtol=1e-5, atol=1e-5)


def test_gated_gelu_with_its_gelu_and_product_inside_the_gemms_matches_the_eager_one_and_follows_weight_changes():
    from nodegraph.fast.feedforward import FastGEGLU
    from nodegraph.models.attention import GEGLU

    torch.manual_seed(0)
    plain = GEGLU(24, 40).bfloat16().eval()
    fast = _swapped(plain, FastGEGLU)
    with torch.no_grad():
        for shape in [(2, 9, 24), (3, 24)]:
            x = torch.randn(shape).bfloat16()
            assert fast(x).shape == plain(x).shape and _close(fast(x), plain(x))
        x = torch.randn(2, 5, 24).bfloat16()
        before = fast(x)
        plain.proj.weight.mul_(-1)
        fast.proj.weight.mul_(-1)
        assert not _close(before, plain(x))  # so a stale packed weight would fail the next line
        assert "_packed_halves" in fast.__dict__ and _close(fast(x), plain(x))


def test_spatial_transformer_kept_channels_last_with_its_residual_in_proj_out_matches_the_plain_one():
    from nodegraph.fast import prepare
    from nodegraph.fast.transformer import FastTransformer2D
    from nodegraph.models.attention import Transformer2D

    torch.manual_seed(0)
    for linear in (False, True):  # SD1 (1×1 conv projections), SD2/SDXL (Linear projections)
        plain = Transformer2D(16, 2, context_dim=12, groups=4, use_linear_projection=linear).eval()
        fast = prepare(torch.nn.Sequential(copy.deepcopy(plain)))[0]
        assert type(fast) is FastTransformer2D
        x = torch.randn(2, 16, 6, 5).contiguous(memory_format=torch.channels_last)
        context = torch.randn(2, 7, 12)
        with torch.no_grad():
            out = fast(x, context)
            torch.testing.assert_close(out, plain(x, context), rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)
