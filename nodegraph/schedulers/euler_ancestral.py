"""Euler ancestral: the ancestral sampler of k-diffusion (Crowson), Euler steps on the probability-flow ODE
down to sigma_down plus fresh noise of scale sigma_up (Karras et al. 2022, section 4; Song et al. 2021).

Matches diffusers' `EulerAncestralDiscreteScheduler` (0.42.1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import SigmaScheduler, randn
from .config import Opt, common_options
from .euler import discrete_sigma_schedule


class EulerAncestralDiscreteScheduler(SigmaScheduler):
    """Stochastic: draws noise from the run's generator at every step; upcasts the sample to float32 inside
    `step` and returns the model output's dtype."""

    class_name = "EulerAncestralDiscreteScheduler"
    short_name = "euler_a"
    zero_snr_floor = True
    options = {
        **common_options("linspace", predictions=("epsilon", "v_prediction")),
        "rescale_betas_zero_snr": Opt(False),
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        self._full_sigmas()

    def _set_timesteps(self, n: int, device) -> None:
        ts, sig, _ = discrete_sigma_schedule(self, n)
        self._set_sigmas(np.concatenate([sig, [0.0]]), ts, device)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        i = self._ensure_step_index(timestep)
        sigma = self.sigmas[i]
        sample = sample.to(torch.float32)
        if self.config.prediction_type == "epsilon":
            x0 = sample - sigma * model_output
        else:
            x0 = model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
        sigma_to = self.sigmas[i + 1]
        # Split the move to sigma_to into a deterministic part (to sigma_down) and fresh noise (sigma_up)
        # so that sigma_down^2 + sigma_up^2 = sigma_to^2.
        sigma_up = (sigma_to**2 * (sigma**2 - sigma_to**2) / sigma**2) ** 0.5
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        prev = sample + (sample - x0) / sigma * (sigma_down - sigma)
        prev = prev + randn(model_output.shape, generator, model_output.device, model_output.dtype) * sigma_up
        self._step_index += 1
        return prev.to(model_output.dtype)
