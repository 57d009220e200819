"""Dropout is skipped at inference (a call and a module call less per block on a warm run) and still applied when
a model trains with a non-zero rate."""

import torch

from nodegraph.models.attention import Attention, FeedForward
from nodegraph.models.resnet import ResnetBlock2D


def test_resnet_attention_and_feed_forward_drop_only_in_training_with_a_non_zero_rate():
    torch.manual_seed(0)
    x, temb = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    tokens = torch.randn(2, 5, 8)
    for module, args in ((ResnetBlock2D(8, 8, 16, groups=4, eps=1e-6, dropout=0.5), (x, temb)),
                         (Attention(8, heads=2, head_dim=4, dropout=0.5), (tokens,)),
                         (FeedForward(8, dropout=0.5), (tokens,))):
        with torch.no_grad():
            inference = module.eval()(*args)
            dropped = module.train()(*args)
            assert not torch.equal(dropped, inference), type(module).__name__  # half the activations were dropped
            module.eval()
            if isinstance(module, FeedForward):  # eval: exactly the two projections, nothing in between
                assert torch.equal(inference, module.net[2](module.net[0](tokens)))
