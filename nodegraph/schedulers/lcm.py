"""LCM: the multistep consistency sampler of Luo et al. 2023, "Latent Consistency Models" (Algorithm 3).

A consistency model maps any noisy x_t straight to a clean estimate f(x_t, t) = c_skip(t) x_t + c_out(t) x0(t)
(Song et al. 2023, "Consistency Models", eq. 7, with the boundary condition f(x, 0) = x). Sampling evaluates
it at a few timesteps picked from the `original_inference_steps`-point schedule the model was distilled on,
and re-noises the estimate to the next timestep with fresh noise between steps.

Matches diffusers' `LCMScheduler` (0.42.1). Shares its timestep choice with TCD (`tcd.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import IndexedScheduler, dynamic_threshold, randn
from .config import BETA_SCHEDULES, THRESHOLD_OPTIONS, Opt, SchedulerConfigError, common_options

SIGMA_DATA = 0.5  # the data standard deviation in the consistency boundary condition (Song et al. 2023)


def distilled_options() -> dict[str, Opt]:
    """The config keys of LCM and TCD: SD's betas by default, the distillation schedule's length and the
    boundary condition's time scale. `timestep_spacing` and `steps_offset` are accepted and, as in diffusers,
    unused: the schedule comes from `original_inference_steps`."""
    return {
        **common_options("leading"),
        "beta_start": Opt(0.00085),
        "beta_end": Opt(0.012),
        "beta_schedule": Opt("scaled_linear", BETA_SCHEDULES),
        "original_inference_steps": Opt(50),
        "clip_sample": Opt(False),
        "clip_sample_range": Opt(1.0),
        "set_alpha_to_one": Opt(True),
        **THRESHOLD_OPTIONS,
        "timestep_scaling": Opt(10.0),
        "rescale_betas_zero_snr": Opt(False),
    }


def skipping_timesteps(owner: str, num_train: int, original_steps: int, n: int) -> np.ndarray:
    """n int64 timesteps, descending, taken at evenly spaced indices of the distillation schedule
    k-1, 2k-1, ..., num_train-1 (k = num_train // original_steps): LCM's "skipping-step" schedule."""
    if original_steps < 1 or original_steps > num_train:
        raise SchedulerConfigError(f"{owner}: `original_inference_steps` must be from 1 to num_train_timesteps="
                                   f"{num_train}; got {original_steps}.")
    if n > original_steps:
        raise SchedulerConfigError(
            f"{owner}: `steps` {n} is more than `original_inference_steps` {original_steps}; the steps are taken "
            f"from the {original_steps}-step schedule the model was distilled on. Use at most {original_steps} "
            f"steps (1-8 is the usual range), or raise `original_inference_steps` in the scheduler config.")
    k = num_train // original_steps
    origin = (np.arange(1, original_steps + 1, dtype=np.int64) * k - 1)[::-1]  # (original_steps,) descending
    picks = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    return origin[picks].copy()


class DistilledScheduler(IndexedScheduler):
    """What LCM and TCD share: no input scaling, int64 timesteps from `skipping_timesteps`, the x0 estimate."""

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        c = self.config
        self.final_alpha_cumprod = torch.tensor(1.0) if c.set_alpha_to_one else self.alphas_cumprod[0]
        self.timesteps = torch.arange(c.num_train_timesteps - 1, -1, -1, dtype=torch.int64)

    def _set_timesteps(self, n: int, device) -> None:
        c = self.config
        ts = skipping_timesteps(self.class_name, c.num_train_timesteps, c.original_inference_steps, n)
        self.timesteps = torch.from_numpy(ts).to(device=device, dtype=torch.long)

    def _neighbours(self, timestep: Any) -> tuple[int, torch.Tensor, torch.Tensor | None]:
        """(step index, this timestep as a tensor, the next timestep of the schedule or None at the end)."""
        i = self._ensure_step_index(timestep)
        t = torch.as_tensor(timestep)
        return i, t, (self.timesteps[i + 1] if i + 1 < len(self.timesteps) else None)

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod[t] if t >= 0 else self.final_alpha_cumprod

    def _x0_and_eps(self, model_output: torch.Tensor, sample: torch.Tensor, a_t: torch.Tensor):
        """The model's clean-image and noise estimates, whatever it predicts (DDIM's eq. 12 terms)."""
        b_t, pred = 1 - a_t, self.config.prediction_type
        if pred == "epsilon":
            return (sample - b_t.sqrt() * model_output) / a_t.sqrt(), model_output
        if pred == "sample":
            return model_output, (sample - a_t**0.5 * model_output) / b_t**0.5
        x0 = a_t**0.5 * sample - b_t**0.5 * model_output  # v-prediction
        return x0, a_t**0.5 * model_output + b_t**0.5 * sample


class LCMScheduler(DistilledScheduler):
    """Stochastic between steps: after every step but the last, the clean estimate is noised to the next
    timestep with noise drawn from the run's generator. Ignores `eta`."""

    class_name = "LCMScheduler"
    short_name = "lcm"
    options = distilled_options()

    def boundary_scalings(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_skip, c_out) at discrete timestep t: c_skip -> 1 and c_out -> 0 as t -> 0 (LCM eq. 4)."""
        scaled = t * self.config.timestep_scaling
        c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
        c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
        return c_skip, c_out

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        self._require_timesteps()
        i, t, t_next = self._neighbours(timestep)
        c = self.config
        a_t = self.alphas_cumprod[t]
        x0, _ = self._x0_and_eps(model_output, sample, a_t)
        if c.thresholding:
            x0 = dynamic_threshold(x0, c.dynamic_thresholding_ratio, c.sample_max_value)
        elif c.clip_sample:
            x0 = x0.clamp(-c.clip_sample_range, c.clip_sample_range)
        c_skip, c_out = self.boundary_scalings(t)
        denoised = c_out * x0 + c_skip * sample  # the consistency function f(x_t, t)
        self._step_index += 1
        if i == self.num_inference_steps - 1:
            return denoised
        a_next = self._alpha_bar(t_next)
        noise = randn(model_output.shape, generator, model_output.device, denoised.dtype)
        return a_next.sqrt() * denoised + (1 - a_next).sqrt() * noise  # q(x_next | x0 = denoised)
