"""Which modules of a cached model get the cancel check (exec/interrupt.py): blocks, not single layers."""

import torch

from nodegraph.exec.interrupt import instrument


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(2)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(2, 2)])  # a single layer in a list, as diffusers names it
        self.net = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.nn.Dropout(0.0)])

    def forward(self, x):
        return self.net[1](self.net[0](self.to_out[0](self.norm(x))))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = torch.nn.Linear(2, 2)  # a direct child: checked even though it is a single layer
        self.blocks = torch.nn.ModuleList([Block(), Block()])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.conv_in(x)


def test_blocks_and_direct_children_are_checked_but_single_layers_inside_lists_are_not():
    model = Model()
    instrument(model)
    hooked = {name for name, module in model.named_modules() if module._forward_pre_hooks}
    assert hooked == {"", "conv_in", "blocks", "blocks.0", "blocks.1", "blocks.0.net.0", "blocks.1.net.0"}
    assert model(torch.zeros(1, 2)).shape == (1, 2)
