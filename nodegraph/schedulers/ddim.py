"""DDIM: Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 (eta = 0 is deterministic).

Matches diffusers' `DDIMScheduler` (0.42.1), including its choice of the previous timestep as
t - num_train_timesteps // n whatever the spacing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import BaseScheduler, dynamic_threshold, randn, spaced_timesteps
from .config import THRESHOLD_OPTIONS, Opt, common_options


class DDIMScheduler(BaseScheduler):
    """With eta > 0 the step adds sigma_t-scaled noise from the run's generator (eq. 16)."""

    class_name = "DDIMScheduler"
    short_name = "ddim"
    options = {
        **common_options("leading"),
        "clip_sample": Opt(True),
        "clip_sample_range": Opt(1.0),
        "set_alpha_to_one": Opt(True),
        **THRESHOLD_OPTIONS,
        "rescale_betas_zero_snr": Opt(False),
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        # alpha_bar "before" step 0: 1 (a clean image) or, for SD-style configs, alpha_bar_0.
        self.final_alpha_cumprod = torch.tensor(1.0) if self.config.set_alpha_to_one else self.alphas_cumprod[0]

    def _set_timesteps(self, n: int, device) -> None:
        c = self.config
        ts = spaced_timesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset)
        self.timesteps = torch.from_numpy(ts.astype(np.int64)).to(device)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        self._require_timesteps()
        c, t = self.config, int(timestep)
        prev_t = t - c.num_train_timesteps // self.num_inference_steps
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b_t = 1 - a_t

        if c.prediction_type == "epsilon":
            x0, eps = (sample - b_t**0.5 * model_output) / a_t**0.5, model_output
        elif c.prediction_type == "sample":
            x0 = model_output
            eps = (sample - a_t**0.5 * x0) / b_t**0.5
        else:  # v_prediction
            x0 = a_t**0.5 * sample - b_t**0.5 * model_output
            eps = a_t**0.5 * model_output + b_t**0.5 * sample
        if c.thresholding:
            x0 = dynamic_threshold(x0, c.dynamic_thresholding_ratio, c.sample_max_value)
        elif c.clip_sample:
            x0 = x0.clamp(-c.clip_sample_range, c.clip_sample_range)

        variance = (1 - a_prev) / b_t * (1 - a_t / a_prev)  # sigma_t^2 / eta^2, eq. 16
        std = eta * variance**0.5
        prev = a_prev**0.5 * x0 + (1 - a_prev - std**2) ** 0.5 * eps
        if eta > 0:
            prev = prev + std * randn(model_output.shape, generator, model_output.device, model_output.dtype)
        return prev
