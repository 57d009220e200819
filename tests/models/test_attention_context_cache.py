"""Cross-attention computes to_k/to_v of the text context once per context, not once per denoising step, and never
serves a stale result: a context or weight changed in place, another context, or autograd all recompute.
(Bit-equality of the UNet with the cache on is tests/models/test_parity.py's job, against diffusers.)"""

from __future__ import annotations

import torch

from nodegraph.models.attention import Attention


def _attention_counting_projections():
    torch.manual_seed(0)
    attention = Attention(dim=16, heads=2, head_dim=8, context_dim=12).eval()
    calls = []
    attention.to_k.register_forward_hook(lambda *_: calls.append("k"))
    return attention, calls


def _fresh(attention: Attention, x, context):
    """The same layer without any cache: what the output must be."""
    clone = Attention(dim=16, heads=2, head_dim=8, context_dim=12).eval()
    clone.load_state_dict(attention.state_dict())
    with torch.no_grad():
        return clone(x, context)


def test_the_same_context_is_projected_once_across_steps():
    attention, calls = _attention_counting_projections()
    x, context = torch.randn(2, 9, 16), torch.randn(2, 5, 12)
    with torch.no_grad():
        first = attention(x, context)
        outputs = [attention(x + step, context) for step in range(3)]
    assert calls == ["k"]
    assert torch.equal(first, outputs[0])
    assert torch.equal(outputs[2], _fresh(attention, x + 2, context))


def test_a_context_changed_in_place_or_replaced_is_projected_again():
    attention, calls = _attention_counting_projections()
    x, context = torch.randn(2, 9, 16), torch.randn(2, 5, 12)
    with torch.no_grad():
        before = attention(x, context)
        context.mul_(2)  # same object, new values
        after = attention(x, context)
        other = attention(x, context.clone())  # equal values, another object
    assert calls == ["k", "k", "k"]
    assert not torch.equal(before, after)
    assert torch.equal(after, _fresh(attention, x, context)) and torch.equal(after, other)


def test_weights_changed_in_place_are_used():
    attention, calls = _attention_counting_projections()
    x, context = torch.randn(2, 9, 16), torch.randn(2, 5, 12)
    with torch.no_grad():
        attention(x, context)
        attention.to_v.weight.mul_(-1)  # e.g. a LoRA fused into the weights
        after = attention(x, context)
    assert calls == ["k", "k"]
    assert torch.equal(after, _fresh(attention, x, context))


def test_nothing_is_cached_while_autograd_records():
    attention, calls = _attention_counting_projections()
    x, context = torch.randn(2, 9, 16), torch.randn(2, 5, 12, requires_grad=True)
    attention(x, context).sum().backward()
    attention(x, context)
    assert calls == ["k", "k"] and context.grad is not None


def test_wrapped_projections_are_called_every_time():
    """An unfused LoRA wraps to_k/to_v in a module with no `weight` of its own: nothing is cached for it."""
    attention, _ = _attention_counting_projections()
    x, context = torch.randn(2, 9, 16), torch.randn(2, 5, 12)
    with torch.no_grad():
        want = _fresh(attention, x, context)
    calls = []

    class Wrapped(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base

        def forward(self, t):
            calls.append("wrapped")
            return self.base(t)

    attention.to_k = Wrapped(attention.to_k)
    with torch.no_grad():
        outputs = [attention(x, context) for _ in range(2)]
    assert calls == ["wrapped", "wrapped"]
    assert torch.equal(outputs[0], want) and torch.equal(outputs[1], want)
