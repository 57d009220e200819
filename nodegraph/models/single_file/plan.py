"""A load plan: for every parameter of a nodegraph model, which tensor of the file fills it, and how.

The remap modules (`ldm_unet`, `ldm_vae`, `clip`) turn the file's keys into a plan; `check` holds the plan
against the model built from the config (every parameter filled, every shape equal, no key of the component
left over), and `read` reads the planned tensors from the memory-mapped file, so nothing converted is ever
written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nodegraph.models.checkpoint import Entry, _count, read_tensors
from nodegraph.models.errors import CheckpointError


@dataclass(frozen=True)
class Take:
    """Fill a parameter from file tensor `key`, optionally transformed."""

    key: str
    rows: tuple[int, int] | None = None  # rows [a, b) of dim 0: OpenCLIP fuses q, k, v into one in_proj
    transpose: bool = False  # OpenCLIP's text_projection is applied as x @ P; a Linear holds Pᵀ
    squeeze: bool = False  # LDM VAE attention uses 1×1 convs; diffusers uses Linear: [C, C, 1, 1] → [C, C]

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        if self.rows is not None:
            stored = (self.rows[1] - self.rows[0], *stored[1:])
        if self.squeeze and len(stored) == 4 and stored[2:] == (1, 1):
            stored = stored[:2]
        return stored[::-1] if self.transpose else stored

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        if self.rows is not None:
            t = t[self.rows[0]:self.rows[1]]
        if self.squeeze and t.dim() == 4:
            t = t.reshape(t.shape[:2])
        return t.t().contiguous() if self.transpose else t


Plan = dict[str, Take]  # model key → where it comes from


def check(plan: Plan, component_keys: list[str], shapes: dict[str, tuple[int, ...]], model: nn.Module,
          what: str, shown: str) -> None:
    """Every parameter and persistent buffer of `model` planned with a matching shape, every key of the component
    (`component_keys`) used; otherwise a CheckpointError naming the keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    non_persistent = {name for name, _ in model.named_buffers()} - set(expected)
    used = {take.key for take in plan.values()}
    missing = [k for k in expected if k not in plan]
    unexpected = [f"{take.key} (as {k})" for k, take in plan.items() if k not in expected and k not in non_persistent]
    leftover = [k for k in component_keys if k not in used]
    mismatched = [f"{take.key} is {list(shapes[take.key])} in the file, but {k} is {list(expected[k])} in the model"
                  for k, take in plan.items() if k in expected and take.shape(shapes[take.key]) != expected[k]]
    if missing or unexpected or leftover or mismatched:
        problems = [_count(missing, "missing parameter"), _count(unexpected + leftover, "unused key"),
                    _count(mismatched, "shape mismatch")]
        raise CheckpointError(
            f"{shown} does not fit {what}: {'; '.join(p for p in problems if p)}. If the model is non-standard, "
            f"pass its diffusers config folder or hub repo as `config`.")


def read(plan: Plan, entries: dict[str, Entry], model: nn.Module, dtype: torch.dtype, device: torch.device,
         channels_last: bool = False) -> dict[str, torch.Tensor]:
    """The planned tensors, keyed for `model` (non-persistent buffers skipped), in `dtype` on `device`."""
    expected = model.state_dict().keys()
    plan = {k: take for k, take in plan.items() if k in expected}
    stored = read_tensors({take.key: entries[take.key] for take in plan.values()}, dtype, device,
                          channels_last=channels_last)
    return {k: take.apply(stored[take.key]) for k, take in plan.items()}

