"""DDPM ancestral sampling: Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Algorithm 2.

Matches diffusers' `DDPMScheduler` (0.42.1): posterior mean from the predicted x0 (eq. 7), with the
variance choices of Nichol & Dhariwal 2021 ("learned_range", eq. 15).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import BaseScheduler, dynamic_threshold, randn, spaced_timesteps
from .config import BETA_SCHEDULES, THRESHOLD_OPTIONS, Opt, common_options

VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range")


class DDPMScheduler(BaseScheduler):
    """Stochastic: draws fresh noise from the run's generator at every step with t > 0."""

    class_name = "DDPMScheduler"
    short_name = "ddpm"
    options = {
        **common_options("leading", betas=BETA_SCHEDULES + ("sigmoid", "laplace")),
        # null comes from a DPM-Solver json; diffusers' DDPM then falls through to fixed_small.
        "variance_type": Opt("fixed_small", VARIANCE_TYPES, aliases={None: "fixed_small"},
                             note="(`fixed_large_log` is left out: diffusers takes the square root of a log there "
                                  "and returns NaN.)"),
        "clip_sample": Opt(True),
        "clip_sample_range": Opt(1.0),
        **THRESHOLD_OPTIONS,
        "rescale_betas_zero_snr": Opt(False),
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        # Without set_timesteps DDPM walks every training step, as diffusers does for training loops.
        self.timesteps = torch.arange(self.config.num_train_timesteps - 1, -1, -1, dtype=torch.int64)

    def _set_timesteps(self, n: int, device) -> None:
        c = self.config
        ts = spaced_timesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset)
        self.timesteps = torch.from_numpy(ts.astype(np.int64)).to(device)

    def _previous_timestep(self, t: int) -> int:
        if self.num_inference_steps is None:
            return t - 1
        i = int((self.timesteps == t).nonzero()[0][0])
        return -1 if i == len(self.timesteps) - 1 else int(self.timesteps[i + 1])

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        c, t = self.config, int(timestep)
        prev_t = self._previous_timestep(t)
        predicted_variance = None
        if c.variance_type in ("learned", "learned_range"):
            if model_output.shape[1] != sample.shape[1] * 2:
                raise ValueError(f"DDPMScheduler: variance_type={c.variance_type!r} needs a model that outputs "
                                 f"2x{sample.shape[1]} channels (mean and variance); got {model_output.shape[1]}.")
            model_output, predicted_variance = torch.split(model_output, sample.shape[1], dim=1)

        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        b_t, b_prev = 1 - a_t, 1 - a_prev
        cur_alpha = a_t / a_prev
        cur_beta = 1 - cur_alpha

        if c.prediction_type == "epsilon":
            x0 = (sample - b_t**0.5 * model_output) / a_t**0.5
        elif c.prediction_type == "sample":
            x0 = model_output
        else:  # v_prediction
            x0 = a_t**0.5 * sample - b_t**0.5 * model_output
        if c.thresholding:
            x0 = dynamic_threshold(x0, c.dynamic_thresholding_ratio, c.sample_max_value)
        elif c.clip_sample:
            x0 = x0.clamp(-c.clip_sample_range, c.clip_sample_range)

        # Posterior mean, Ho et al. eq. 7.
        prev = (a_prev**0.5 * cur_beta) / b_t * x0 + cur_alpha**0.5 * b_prev / b_t * sample
        if t > 0:
            noise = randn(model_output.shape, generator, model_output.device, model_output.dtype)
            prev = prev + self._noise_scale(b_prev, b_t, cur_beta, predicted_variance) * noise
        return prev

    def _noise_scale(self, b_prev, b_t, cur_beta, predicted_variance):
        """The standard deviation of the step's noise for the configured `variance_type`."""
        var = torch.clamp(b_prev / b_t * cur_beta, min=1e-20)  # beta-tilde, Ho et al. eq. 7
        kind = self.config.variance_type
        if kind == "fixed_small":
            return var**0.5
        if kind == "fixed_small_log":
            return torch.exp(0.5 * torch.log(var))
        if kind == "fixed_large":
            return cur_beta**0.5
        if kind == "learned":
            return predicted_variance**0.5
        frac = (predicted_variance + 1) / 2  # learned_range: interpolate log-variances
        return torch.exp(0.5 * (frac * torch.log(cur_beta) + (1 - frac) * torch.log(var)))
