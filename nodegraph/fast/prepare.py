"""Turn a loaded model into its fast form, in place (its class and state-dict names stay those of nodegraph)."""

from __future__ import annotations

from torch import nn


def prepare(model: nn.Module) -> nn.Module:
    """Swap the layers fast mode speeds up for their fast subclasses; the same parameters, the same names.

    Only CPU models: fast mode is refused on other devices before anything loads (support.py)."""
    from nodegraph.fast.attention import FastAttention
    from nodegraph.fast.conv import FastConv2d, packable
    from nodegraph.fast.feedforward import FastGEGLU
    from nodegraph.fast.linear import FastLinear
    from nodegraph.fast.resnet import FastResnetBlock2D
    from nodegraph.fast.transformer import FastTransformer2D
    from nodegraph.models.attention import GEGLU, Attention, Transformer2D
    from nodegraph.models.base import Conv2d, Linear
    from nodegraph.models.resnet import ResnetBlock2D

    for module in model.modules():
        if type(module) is Conv2d and packable(module):
            module.__class__ = FastConv2d
        elif type(module) is Linear:
            module.__class__ = FastLinear
        elif type(module) is Attention:
            module.__class__ = FastAttention
        elif type(module) is ResnetBlock2D:
            module.__class__ = FastResnetBlock2D
        elif type(module) is GEGLU:
            module.__class__ = FastGEGLU
        elif type(module) is Transformer2D:
            module.__class__ = FastTransformer2D
    return model
