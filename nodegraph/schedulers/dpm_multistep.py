"""DPM-Solver++ multistep: Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", Algorithm 2 (2M) and its third-order extension; `sde-dpmsolver++` is the SDE variant
(Appendix of the same paper). "DPM++ 2M" in most UIs is `solver_order=2, algorithm_type="dpmsolver++"`.

Matches diffusers' `DPMSolverMultistepScheduler` (0.42.1) for the data-prediction (++) algorithms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import (
    IndexedScheduler, alpha_sigma, dynamic_threshold, exponential_sigmas, interp_sigmas, karras_sigmas, randn,
    sigma_bounds, sigma_to_t, spaced_timesteps, train_sigmas,
)
from .config import NO_BETA_SIGMAS, NO_FLOW, THRESHOLD_OPTIONS, Opt, common_options, only


class DPMSolverMultistepScheduler(IndexedScheduler):
    """Stateful multistep solver: keeps the last `solver_order` data predictions; `set_timesteps` forgets them.
    With `algorithm_type="sde-dpmsolver++"` every step draws noise from the run's generator."""

    class_name = "DPMSolverMultistepScheduler"
    short_name = "dpmpp_2m"
    zero_snr_floor = True
    index_fallback_last = True
    options = {
        **common_options("linspace"),
        "solver_order": Opt(2, (1, 2, 3)),
        **THRESHOLD_OPTIONS,
        "algorithm_type": Opt("dpmsolver++", ("dpmsolver++", "sde-dpmsolver++"), aliases={"deis": "dpmsolver++"},
                              note="(the noise-prediction `dpmsolver` variants are deprecated in diffusers and "
                                   "not implemented.)"),
        # A UniPC/DEIS json carries solver_type bh1/bh2/logrho; diffusers rewrites those to midpoint.
        "solver_type": Opt("midpoint", ("midpoint", "heun"),
                           aliases={"bh1": "midpoint", "bh2": "midpoint", "logrho": "midpoint"}),
        "lower_order_final": Opt(True),
        "euler_at_final": Opt(False),
        "use_karras_sigmas": Opt(False),
        "use_exponential_sigmas": Opt(False),
        "use_beta_sigmas": NO_BETA_SIGMAS,
        "use_lu_lambdas": Opt(False),
        "use_flow_sigmas": only(False, NO_FLOW),
        "flow_shift": Opt(1.0),
        "final_sigmas_type": Opt("zero", ("zero", "sigma_min")),
        "lambda_min_clipped": Opt(-float("inf")),
        # Only the learned kinds matter here; a DDPM json's fixed_* kinds act as null, as in diffusers.
        "variance_type": Opt(None, (None, "learned", "learned_range"),
                             aliases={k: None for k in ("fixed_small", "fixed_small_log", "fixed_large",
                                                        "fixed_large_log")}),
        "rescale_betas_zero_snr": Opt(False),
        "use_dynamic_shifting": only(False, NO_FLOW),
        "time_shift_type": Opt("exponential", ("exponential", "linear")),
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        self.sigmas = torch.from_numpy(train_sigmas(self.alphas_cumprod))
        self._reset()

    def _reset(self) -> None:
        self.model_outputs: list[torch.Tensor | None] = [None] * self.config.solver_order
        self.lower_order_nums = 0  # steps taken so far, capped at solver_order: the warm-up uses lower orders

    def _set_timesteps(self, n: int, device) -> None:
        c, big_n = self.config, self.config.num_train_timesteps
        # lambda_min_clipped cuts the noisy end of the schedule where log-SNR falls below it.
        lambdas = torch.log(torch.sqrt(self.alphas_cumprod)) - torch.log(torch.sqrt(1 - self.alphas_cumprod))
        clipped = int(torch.searchsorted(torch.flip(lambdas, [0]), c.lambda_min_clipped))
        ts = spaced_timesteps(c.timestep_spacing, big_n, n, c.steps_offset, extra_point=True, last=big_n - clipped)
        sig = train_sigmas(self.alphas_cumprod)
        log_sigmas = np.log(sig)
        if c.use_karras_sigmas or c.use_lu_lambdas:
            if c.use_karras_sigmas:
                lo, hi = sigma_bounds(c, self.explicit_config, sig[0].item(), sig[-1].item())
                sig = karras_sigmas(lo, hi, n)
            else:  # evenly spaced in log-SNR (Lu et al. 2022, the DPM-Solver schedule)
                lo, hi = log_sigmas[0].item(), log_sigmas[-1].item()
                sig = np.exp(hi + np.linspace(0, 1, n) * (lo - hi))
            ts = sigma_to_t(sig, log_sigmas)
            ts = ts if c.beta_schedule == "squaredcos_cap_v2" else ts.round()
        elif c.use_exponential_sigmas:
            lo, hi = sigma_bounds(c, self.explicit_config, sig[0].item(), sig[-1].item())
            sig = exponential_sigmas(lo, hi, n)
            ts = sigma_to_t(sig, log_sigmas)
        else:
            sig = interp_sigmas(ts, sig)
        ac0 = self.alphas_cumprod[0]
        last = (((1 - ac0) / ac0) ** 0.5).item() if c.final_sigmas_type == "sigma_min" else 0
        self.sigmas = torch.from_numpy(np.concatenate([sig, [last]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(ts)
        self._reset()

    def _convert(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The data prediction x0 the ++ solvers integrate."""
        c = self.config
        if c.prediction_type == "sample":
            x0 = model_output
        else:
            alpha_t, sigma_t = alpha_sigma(self.sigmas[self._step_index])
            if c.prediction_type == "epsilon":
                if c.variance_type is not None:  # a learned-variance model: the mean is the first 3 channels
                    model_output = model_output[:, :3]
                x0 = (sample - sigma_t * model_output) / alpha_t
            else:
                x0 = alpha_t * sample - sigma_t * model_output
        if c.thresholding:
            x0 = dynamic_threshold(x0, c.dynamic_thresholding_ratio, c.sample_max_value)
        return x0

    def _coeffs(self, *idx: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(alpha, sigma, lambda) at each sigma index."""
        out = []
        for i in idx:
            alpha, sigma = alpha_sigma(self.sigmas[i])
            out.append((alpha, sigma, torch.log(alpha) - torch.log(sigma)))
        return out

    def _first_order(self, m0: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """DPM-Solver++(1), which is DDIM in the data-prediction form."""
        i = self._step_index
        (alpha_t, sigma_t, lambda_t), (_, sigma_s, lambda_s) = self._coeffs(i + 1, i)
        h = lambda_t - lambda_s
        if noise is None:
            return sigma_t / sigma_s * x - alpha_t * (torch.exp(-h) - 1.0) * m0
        return (sigma_t / sigma_s * torch.exp(-h) * x + alpha_t * (1 - torch.exp(-2.0 * h)) * m0
                + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise)

    def _second_order(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Multistep DPM-Solver++(2M): a finite-difference slope from the last two data predictions."""
        i = self._step_index
        (alpha_t, sigma_t, lambda_t), (_, sigma_s0, lambda_s0), (_, _, lambda_s1) = self._coeffs(i + 1, i, i - 1)
        m0, m1 = self.model_outputs[-1], self.model_outputs[-2]
        h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
        r0 = h_0 / h
        d0, d1 = m0, 1.0 / r0 * (m0 - m1)
        midpoint = self.config.solver_type == "midpoint"
        if noise is None:
            x_t = sigma_t / sigma_s0 * x - alpha_t * (torch.exp(-h) - 1.0) * d0
            if midpoint:
                return x_t - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * d1
            return x_t + alpha_t * ((torch.exp(-h) - 1.0) / h + 1.0) * d1
        x_t = sigma_t / sigma_s0 * torch.exp(-h) * x + alpha_t * (1 - torch.exp(-2.0 * h)) * d0
        if midpoint:
            x_t = x_t + 0.5 * (alpha_t * (1 - torch.exp(-2.0 * h))) * d1
        else:
            x_t = x_t + alpha_t * ((1.0 - torch.exp(-2.0 * h)) / (-2.0 * h) + 1.0) * d1
        return x_t + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise

    def _third_order(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Multistep DPM-Solver++(3M): second differences from the last three data predictions."""
        i = self._step_index
        (alpha_t, sigma_t, lambda_t), (_, sigma_s0, lambda_s0), (_, _, lambda_s1), (_, _, lambda_s2) = \
            self._coeffs(i + 1, i, i - 1, i - 2)
        m0, m1, m2 = self.model_outputs[-1], self.model_outputs[-2], self.model_outputs[-3]
        h, h_0, h_1 = lambda_t - lambda_s0, lambda_s0 - lambda_s1, lambda_s1 - lambda_s2
        r0, r1 = h_0 / h, h_1 / h
        d1_0, d1_1 = 1.0 / r0 * (m0 - m1), 1.0 / r1 * (m1 - m2)
        d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
        d2 = 1.0 / (r0 + r1) * (d1_0 - d1_1)
        if noise is None:
            return (sigma_t / sigma_s0 * x - alpha_t * (torch.exp(-h) - 1.0) * m0
                    + alpha_t * ((torch.exp(-h) - 1.0) / h + 1.0) * d1
                    - alpha_t * ((torch.exp(-h) - 1.0 + h) / h**2 - 0.5) * d2)
        return (sigma_t / sigma_s0 * torch.exp(-h) * x + alpha_t * (1.0 - torch.exp(-2.0 * h)) * m0
                + alpha_t * ((1.0 - torch.exp(-2.0 * h)) / (-2.0 * h) + 1.0) * d1
                + alpha_t * ((1.0 - torch.exp(-2.0 * h) - 2.0 * h) / (2.0 * h) ** 2 - 0.5) * d2
                + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        c = self.config
        i, n = self._ensure_step_index(timestep), len(self.timesteps)
        # Few-step schedules finish with lower orders: higher ones are unstable there (Lu et al. 2022, sec. 5).
        final_first = i == n - 1 and (c.euler_at_final or (c.lower_order_final and n < 15)
                                      or c.final_sigmas_type == "zero")
        final_second = i == n - 2 and c.lower_order_final and n < 15
        m0 = self._convert(model_output, sample)
        self.model_outputs = self.model_outputs[1:] + [m0]
        sample = sample.to(torch.float32)
        noise = None
        if c.algorithm_type == "sde-dpmsolver++":
            noise = randn(m0.shape, generator, m0.device, torch.float32)
        if c.solver_order == 1 or self.lower_order_nums < 1 or final_first:
            prev = self._first_order(m0, sample, noise)
        elif c.solver_order == 2 or self.lower_order_nums < 2 or final_second:
            prev = self._second_order(sample, noise)
        else:
            prev = self._third_order(sample, noise)
        self.lower_order_nums = min(self.lower_order_nums + 1, c.solver_order)
        self._step_index += 1
        return prev.to(m0.dtype)

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha_t, sigma_t = alpha_sigma(self._noise_sigmas(original, timesteps))
        return alpha_t * original + sigma_t * noise
