"""PNDM: Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds".

Matches diffusers' `PNDMScheduler` (0.42.1): a pseudo linear multi-step method (PLMS, eq. 12) warmed up
either with pseudo Runge-Kutta steps (PRK, eq. 13; 4 model calls per step) or, with `skip_prk_steps`, with
the lower-order Adams-Bashforth formulas, in which case the second timestep is repeated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import BaseScheduler, spaced_timesteps
from .config import Opt, common_options


class PNDMScheduler(BaseScheduler):
    """Stateful: keeps the last four noise predictions; `set_timesteps` forgets them."""

    class_name = "PNDMScheduler"
    short_name = "pndm"
    options = {
        **common_options("leading", predictions=("epsilon", "v_prediction")),
        "skip_prk_steps": Opt(False),
        "set_alpha_to_one": Opt(False),
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        self.final_alpha_cumprod = torch.tensor(1.0) if self.config.set_alpha_to_one else self.alphas_cumprod[0]
        self._reset()

    def _reset(self) -> None:
        self.ets: list[torch.Tensor] = []  # past noise predictions, oldest first
        self.counter = 0  # model calls seen since set_timesteps
        self.cur_model_output: Any = 0  # running PRK combination of the four calls of one step
        self.cur_sample: torch.Tensor | None = None  # the sample the current PRK/first PLMS step started from
        self.prk_timesteps = np.array([], dtype=np.int64)

    def _set_timesteps(self, n: int, device) -> None:
        c = self.config
        self._reset()
        base = spaced_timesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset)[::-1]  # ascending
        if c.skip_prk_steps:
            # The first PLMS step is a two-call Heun-like step at the same t, hence the repeat.
            plms = np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1]
        else:
            half = c.num_train_timesteps // n // 2
            prk = base[-4:].repeat(2) + np.tile(np.array([0, half]), 4)
            self.prk_timesteps = prk[:-1].repeat(2)[1:-1][::-1].astype(np.int64)
            plms = base[:-3][::-1]
        ts = np.concatenate([self.prk_timesteps, plms]).astype(np.int64)
        self.timesteps = torch.from_numpy(ts).to(device)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        self._require_timesteps()
        if self.counter < len(self.prk_timesteps) and not self.config.skip_prk_steps:
            return self._step_prk(model_output, int(timestep), sample)
        return self._step_plms(model_output, int(timestep), sample)

    def _step_prk(self, model_output: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        """Fourth-order pseudo Runge-Kutta: calls at t, t - h/2, t - h/2, t - h, weights 1/6, 1/3, 1/3, 1/6."""
        half = self.config.num_train_timesteps // self.num_inference_steps // 2
        prev_t = t - (0 if self.counter % 2 else half)
        t = int(self.prk_timesteps[self.counter // 4 * 4])
        stage = self.counter % 4
        if stage == 0:
            self.cur_model_output += 1 / 6 * model_output
            self.ets.append(model_output)
            self.cur_sample = sample
        elif stage in (1, 2):
            self.cur_model_output += 1 / 3 * model_output
        else:
            model_output = self.cur_model_output + 1 / 6 * model_output
            self.cur_model_output = 0
        start = self.cur_sample if self.cur_sample is not None else sample
        self.counter += 1
        return self._prev_sample(start, t, prev_t, model_output)

    def _step_plms(self, model_output: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        if not self.config.skip_prk_steps and len(self.ets) < 3:
            raise RuntimeError("PNDMScheduler: the PLMS steps need the PRK warm-up first; run every timestep "
                               "of `scheduler.timesteps` in order.")
        ratio = self.config.num_train_timesteps // self.num_inference_steps
        prev_t = t - ratio
        if self.counter != 1:
            self.ets = self.ets[-3:]
            self.ets.append(model_output)
        else:  # second call of the warm-up step: same t again, evaluated from the step's start
            prev_t, t = t, t + ratio

        ets = self.ets
        if len(ets) == 1 and self.counter == 0:
            self.cur_sample = sample
        elif len(ets) == 1 and self.counter == 1:
            model_output = (model_output + ets[-1]) / 2
            sample, self.cur_sample = self.cur_sample, None
        elif len(ets) == 2:
            model_output = (3 * ets[-1] - ets[-2]) / 2
        elif len(ets) == 3:
            model_output = (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
        else:
            model_output = 1 / 24 * (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4])
        self.counter += 1
        return self._prev_sample(sample, t, prev_t, model_output)

    def _prev_sample(self, sample: torch.Tensor, t: int, prev_t: int, eps: torch.Tensor) -> torch.Tensor:
        """The transfer x_t -> x_{t-delta} of Liu et al. eq. 11, given the (combined) noise prediction."""
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b_t, b_prev = 1 - a_t, 1 - a_prev
        if self.config.prediction_type == "v_prediction":
            eps = a_t**0.5 * eps + b_t**0.5 * sample
        sample_coeff = (a_prev / a_t) ** 0.5
        denom = a_t * b_prev**0.5 + (a_t * b_t * a_prev) ** 0.5
        return sample_coeff * sample - (a_prev - a_t) * eps / denom
