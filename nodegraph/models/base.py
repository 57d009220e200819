"""What every nodegraph model shares: layers that skip initialising meta tensors, the dtype/device properties,
and installing loaded weights.

Models are built on the meta device and then given their checkpoint's tensors, so the random initialisation
that torch's layers run in their constructors is wasted work: `Linear`, `Conv2d`, `GroupNorm`, `LayerNorm`
and `Embedding` here are torch's, except that they skip it for meta weights (a per-instance check, so unlike
patching `torch.nn.init` it cannot leave another thread's layers uninitialised). Built on a real device they
initialise as usual.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _NoInitOnMeta:
    """Skips torch's random init while the module is built on the meta device (the checkpoint fills it)."""

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class Linear(_NoInitOnMeta, nn.Linear):
    pass


class Conv2d(_NoInitOnMeta, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """torch's `Conv2d.forward` minus a Python call: the same `torch.conv2d` with the same arguments."""
        if self.padding_mode != "zeros":
            return super().forward(x)
        return torch.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class GroupNorm(_NoInitOnMeta, nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`torch.group_norm` as `F.group_norm` calls it, without its Python-side checks (a few µs a call, ~20
        calls a UNet step); inputs those checks could refuse (under 3 dims, a single value a group) still go
        through them."""
        if x.dim() < 3 or x.numel() < 2 * self.num_groups:
            return super().forward(x)
        return torch.group_norm(x, self.num_groups, self.weight, self.bias, self.eps, torch.backends.cudnn.enabled)


class LayerNorm(_NoInitOnMeta, nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`torch.layer_norm` as `F.layer_norm` calls it, one Python call less."""
        return torch.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps,
                                torch.backends.cudnn.enabled)


class Embedding(_NoInitOnMeta, nn.Embedding):
    """Also spares the import: torch's `normal_` on a meta tensor goes through its Python reference
    implementation, which imports torch._dynamo (about 1 s on this CPU)."""


class Model(nn.Module):
    config: Any

    compute_dtype: torch.dtype | None = None  # set where weights are kept in another dtype (models/streaming.py)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: the first parameter's, skipping float8 weights (models/fp8.py upcasts those)."""
        if self.compute_dtype is not None:
            return self.compute_dtype
        return next((p.dtype for p in self.parameters() if p.dtype.itemsize > 1), torch.float32)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def install_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Make `state`'s tensors the model's parameters and buffers, frozen (gradients off), without copying.

    The keys must already have been checked against the model (`checkpoint.fit`); this is
    `load_state_dict(assign=True)` without its per-key bookkeeping, which costs more than the rest of a load.
    """
    modules = dict(model.named_modules())
    for key, tensor in state.items():
        owner, _, name = key.rpartition(".")
        module = modules[owner]
        if name in module._parameters:
            setattr(module, name, nn.Parameter(tensor, requires_grad=False))
        else:
            setattr(module, name, tensor)
