"""Euler: Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
Algorithm 2 without churn (the deterministic Euler method on the probability-flow ODE).

Matches diffusers' `EulerDiscreteScheduler` (0.42.1) with `s_churn = 0`, its default.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import (
    SigmaScheduler, exponential_sigmas, interp_sigmas, karras_sigmas, sigma_bounds, sigma_to_t, spaced_timesteps,
    train_sigmas,
)
from .config import NO_BETA_SIGMAS, PREDICTIONS, Opt, common_options


def discrete_sigma_schedule(sched: SigmaScheduler, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float32 timesteps, sigmas interpolated at them, log of the training sigmas) shared by Euler,
    Euler ancestral and LMS."""
    c = sched.config
    ts = spaced_timesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset,
                          round_linspace=False).astype(np.float32)  # diffusers interpolates at float32 t
    sig = train_sigmas(sched.alphas_cumprod)
    return ts, interp_sigmas(ts, sig), np.log(sig)


class EulerDiscreteScheduler(SigmaScheduler):
    """Deterministic; upcasts the sample to float32 inside `step` and returns the model output's dtype."""

    class_name = "EulerDiscreteScheduler"
    short_name = "euler"
    zero_snr_floor = True
    options = {
        **common_options("linspace"),
        "prediction_type": Opt("epsilon", PREDICTIONS, aliases={"original_sample": "sample"}),
        "interpolation_type": Opt("linear", ("linear", "log_linear")),
        "use_karras_sigmas": Opt(False),
        "use_exponential_sigmas": Opt(False),
        "use_beta_sigmas": NO_BETA_SIGMAS,
        "sigma_min": Opt(None, kind="float?"),
        "sigma_max": Opt(None, kind="float?"),
        "timestep_type": Opt("discrete", ("discrete", "continuous")),
        "rescale_betas_zero_snr": Opt(False),
        "final_sigmas_type": Opt("zero", ("zero", "sigma_min")),
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        self._full_sigmas()

    def _set_timesteps(self, n: int, device) -> None:
        c = self.config
        ts, sig, log_sigmas = discrete_sigma_schedule(self, n)
        if c.interpolation_type == "log_linear":  # n + 1 points, log-spaced between the extreme sigmas
            train = train_sigmas(self.alphas_cumprod)
            sig = torch.linspace(np.log(train[-1]), np.log(train[0]), n + 1).exp().numpy()
        if c.use_karras_sigmas or c.use_exponential_sigmas:
            lo, hi = sigma_bounds(c, self.explicit_config, sig[-1].item(), sig[0].item())
            sig = (karras_sigmas if c.use_karras_sigmas else exponential_sigmas)(lo, hi, n)
            ts = sigma_to_t(sig, log_sigmas)
        ac0 = self.alphas_cumprod[0]
        last = (((1 - ac0) / ac0) ** 0.5).item() if c.final_sigmas_type == "sigma_min" else 0
        self._set_sigmas(np.concatenate([sig, [last]]), ts, device)
        if c.timestep_type == "continuous" and c.prediction_type == "v_prediction":
            # EDM-style preconditioning: the model is conditioned on c_noise = log(sigma) / 4.
            self.timesteps = (0.25 * torch.log(self.sigmas[:-1])).to(device)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        i = self._ensure_step_index(timestep)
        sample = sample.to(torch.float32)
        sigma = self.sigmas[i]
        x0 = self._denoised(model_output, sample, sigma)
        derivative = (sample - x0) / sigma  # dx/dsigma of the probability-flow ODE
        prev = sample + derivative * (self.sigmas[i + 1] - sigma)
        self._step_index += 1
        return prev.to(model_output.dtype)
