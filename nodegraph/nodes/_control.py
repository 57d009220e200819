"""Helpers of the ControlNet nodes (imported lazily: they touch loaded models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ControlEntry:
    """One ControlNet of a control chain, with what it needs at every step."""

    controlnet: Any
    image: Any  # (1, 3, H, W) in [0, 1], in the ControlNet's dtype
    strength: float
    start: float
    end: float
    guess_mode: bool = False  # run on the conditional half only, residuals weighted 0.1 … 1 (diffusers' guess_mode)

    @property
    def conditional_only(self) -> bool:
        """diffusers runs global-pool ControlNets (shuffle) as in guess mode, whatever the flag says."""
        return self.guess_mode or bool(self.controlnet.config.global_pool_conditions)


def range_problem(known: dict) -> tuple[tuple[str, ...], str, str] | None:
    """`Node.check_inputs` of the nodes with a ControlNet step range: refuse start ≥ end before anything runs."""
    start, end = known.get("start"), known.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and start >= end:
        return (("start", "end"), f"`start` {start} must be below `end` {end}",
                "the ControlNet acts on the steps in [start, end) of the schedule: give a `control_start` below "
                "`control_end`, e.g. 0.0 and 1.0 for all the steps")
    return None


def check_range(start: float, end: float) -> None:
    if start >= end:
        raise ValueError(f"`control_start` {start} must be below `control_end` {end}: the ControlNet acts on the "
                         f"steps in [start, end) of the schedule, e.g. start 0.0 and end 1.0 for all of them")


def conditional_half(entry, latents, t, embeddings, added: dict):
    """A ControlNet run on the conditional half of a CFG batch only (guess mode); the unconditional half's
    residuals are zeros, so that half of the UNet call is the plain UNet's."""
    import torch

    half = latents.shape[0]  # B
    image = entry.image.expand(half, -1, -1, -1)  # (B, 3, H, W)
    cond = {name: value[half:] for name, value in added.items()}  # SDXL: [negative × B, positive × B] → positive
    d, m = entry.controlnet(latents, t, embeddings[half:], image, entry.strength, guess_mode=entry.guess_mode, **cond)
    return [torch.cat([torch.zeros_like(r), r]) for r in d], torch.cat([torch.zeros_like(m), m])
