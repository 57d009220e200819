"""UniPC: Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models", Algorithms 1-3 (UniP predictor and UniC corrector, B(h) variants bh1 and bh2).

Matches diffusers' `UniPCMultistepScheduler` (0.42.1) for the VP (non-flow) schedules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import (
    IndexedScheduler, alpha_sigma, dynamic_threshold, exponential_sigmas, interp_sigmas, karras_sigmas, sigma_bounds,
    sigma_to_t, spaced_timesteps, train_sigmas,
)
from .config import NO_BETA_SIGMAS, NO_FLOW, THRESHOLD_OPTIONS, Opt, SchedulerConfigError, common_options, only


class UniPCMultistepScheduler(IndexedScheduler):
    """Stateful multistep solver: keeps the last `solver_order` data predictions and the previous sample for
    the corrector; `set_timesteps` forgets them."""

    class_name = "UniPCMultistepScheduler"
    short_name = "unipc"
    zero_snr_floor = True
    index_fallback_last = True
    options = {
        **common_options("linspace"),
        "solver_order": Opt(2, (1, 2, 3)),
        **THRESHOLD_OPTIONS,
        "predict_x0": Opt(True),
        # A DPM-Solver json carries solver_type midpoint/heun; diffusers rewrites those to bh2.
        "solver_type": Opt("bh2", ("bh1", "bh2"), aliases={"midpoint": "bh2", "heun": "bh2", "logrho": "bh2"}),
        "lower_order_final": Opt(True),
        "disable_corrector": Opt([], kind="ints"),
        "solver_p": only(None, "A second scheduler as predictor is not supported."),
        "use_karras_sigmas": Opt(False),
        "use_exponential_sigmas": Opt(False),
        "use_beta_sigmas": NO_BETA_SIGMAS,
        "use_flow_sigmas": only(False, NO_FLOW),
        "flow_shift": Opt(1.0),
        "final_sigmas_type": Opt("zero", ("zero", "sigma_min")),
        "rescale_betas_zero_snr": Opt(False),
        "use_dynamic_shifting": only(False, NO_FLOW),
        "time_shift_type": Opt("exponential", ("exponential", "linear")),
        "sigma_min": Opt(None, kind="float?"),
        "sigma_max": Opt(None, kind="float?"),
        "shift_terminal": only(None, NO_FLOW),
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        c = self.config
        # Stepping to sigma = 0 makes lambda infinite: the noise-prediction update then multiplies 0 by
        # exp(inf), and a multistep (order >= 2) last step divides by an infinite step size. diffusers returns
        # NaN or fails to solve there; say so up front instead.
        if c.final_sigmas_type == "zero" and not c.predict_x0:
            raise SchedulerConfigError(
                "UniPCMultistepScheduler: `predict_x0=false` cannot step to a final sigma of 0 (diffusers returns "
                "NaN at the last step); set `final_sigmas_type` to 'sigma_min' or `predict_x0` to true.")
        if c.final_sigmas_type == "zero" and not c.lower_order_final and c.solver_order > 1:
            raise SchedulerConfigError(
                f"UniPCMultistepScheduler: `lower_order_final=false` with `solver_order={c.solver_order}` cannot "
                "step to a final sigma of 0 (diffusers returns inf, NaN or a singular-matrix error at the last step); "
                "set `lower_order_final` to true or `final_sigmas_type` to 'sigma_min'.")
        self.sigmas = torch.from_numpy(train_sigmas(self.alphas_cumprod))
        self._reset()

    def _reset(self) -> None:
        self.model_outputs: list[torch.Tensor | None] = [None] * self.config.solver_order
        self.lower_order_nums = 0  # steps taken so far, capped at solver_order: the warm-up uses lower orders
        self.last_sample: torch.Tensor | None = None
        self.this_order = 1

    def _set_timesteps(self, n: int, device) -> None:
        c = self.config
        ts = spaced_timesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset, extra_point=True)
        sig = train_sigmas(self.alphas_cumprod)
        if c.use_karras_sigmas or c.use_exponential_sigmas:
            log_sigmas = np.log(sig)
            lo, hi = sigma_bounds(c, self.explicit_config, sig[0].item(), sig[-1].item())
            make = karras_sigmas if c.use_karras_sigmas else exponential_sigmas
            sig = make(lo, hi, n)
            ts = sigma_to_t(sig, log_sigmas)
            ts = ts.round() if c.use_karras_sigmas else ts
            last = sig[-1] if c.final_sigmas_type == "sigma_min" else 0
        else:
            sig = interp_sigmas(ts, sig)
            ac0 = self.alphas_cumprod[0]
            last = (((1 - ac0) / ac0) ** 0.5).item() if c.final_sigmas_type == "sigma_min" else 0
        self.sigmas = torch.from_numpy(np.concatenate([sig, [last]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(ts)
        self._reset()

    # -- model output -> data prediction (or noise prediction when predict_x0 is off)
    def _convert(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        c = self.config
        alpha_t, sigma_t = alpha_sigma(self.sigmas[self._step_index])
        if c.predict_x0:
            if c.prediction_type == "epsilon":
                x0 = (sample - sigma_t * model_output) / alpha_t
            elif c.prediction_type == "sample":
                x0 = model_output
            else:
                x0 = alpha_t * sample - sigma_t * model_output
            if c.thresholding:
                x0 = dynamic_threshold(x0, c.dynamic_thresholding_ratio, c.sample_max_value)
            return x0
        if c.prediction_type == "epsilon":
            return model_output
        if c.prediction_type == "sample":
            return (sample - alpha_t * model_output) / sigma_t
        return alpha_t * model_output + sigma_t * sample

    def _lambda(self, i: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(alpha, sigma, lambda = log alpha - log sigma) at sigma index i."""
        alpha, sigma = alpha_sigma(self.sigmas[i].to(device))
        return alpha, sigma, torch.log(alpha) - torch.log(sigma)

    def _update(self, x: torch.Tensor, t_idx: int, s0_idx: int, order: int, corrector_output=None) -> torch.Tensor:
        """UniP (corrector_output None) or UniC update from sigma index s0_idx to t_idx (Zhao et al. Alg. 2/3).

        The history `model_outputs[-1]` is the prediction at s0; older ones sit at s0_idx - 1, s0_idx - 2, ...
        """
        device, outs = x.device, self.model_outputs
        alpha_t, sigma_t, lambda_t = self._lambda(t_idx, device)
        alpha_s0, sigma_s0, lambda_s0 = self._lambda(s0_idx, device)
        m0 = outs[-1]
        h = lambda_t - lambda_s0
        rks, d1s = [], []
        for i in range(1, order):
            lambda_si = self._lambda(s0_idx - i, device)[2]
            rk = (lambda_si - lambda_s0) / h
            rks.append(rk)
            d1s.append((outs[-(i + 1)] - m0) / rk)
        rks.append(torch.ones((), device=device))
        rks = torch.stack(rks)

        hh = -h if self.config.predict_x0 else h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if self.config.solver_type == "bh1" else torch.expm1(hh)
        rows, b, factorial = [], [], 1
        for i in range(1, order + 1):
            rows.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        r_mat, b = torch.stack(rows), torch.stack(b)
        d1s = torch.stack(d1s, dim=1) if d1s else None

        if self.config.predict_x0:
            base, scale = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0, alpha_t * b_h
        else:
            base, scale = alpha_t / alpha_s0 * x - sigma_t * h_phi_1 * m0, sigma_t * b_h
        if corrector_output is None:  # UniP: rho solves the order-1 truncated system (rho = 1/2 at order 2)
            if d1s is None:
                # diffusers subtracts scale * 0 here, which is NaN for bh1 at a final sigma of 0 (scale = -inf);
                # everywhere else that term is exactly 0, so leaving it out changes no finite result.
                return base.to(x.dtype)
            if order == 2:
                rhos = torch.ones(1, dtype=x.dtype, device=device) * 0.5
            else:
                rhos = torch.linalg.solve(r_mat[:-1, :-1], b[:-1]).to(device).to(x.dtype)
            return (base - scale * torch.einsum("k,bkc...->bc...", rhos, d1s)).to(x.dtype)
        if order == 1:  # UniC also uses the new model output at t
            rhos = torch.ones(1, dtype=x.dtype, device=device) * 0.5
        else:
            rhos = torch.linalg.solve(r_mat, b).to(device).to(x.dtype)
        corr = torch.einsum("k,bkc...->bc...", rhos[:-1], d1s) if d1s is not None else 0
        return (base - scale * (corr + rhos[-1] * (corrector_output - m0))).to(x.dtype)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        c = self.config
        i = self._ensure_step_index(timestep)
        use_corrector = i > 0 and (i - 1) not in c.disable_corrector and self.last_sample is not None
        converted = self._convert(model_output, sample)
        if use_corrector:  # UniC refines the sample the previous UniP step produced
            sample = self._update(self.last_sample, i, i - 1, self.this_order, corrector_output=converted)
        self.model_outputs = self.model_outputs[1:] + [converted]

        order = min(c.solver_order, len(self.timesteps) - i) if c.lower_order_final else c.solver_order
        self.this_order = min(order, self.lower_order_nums + 1)
        self.last_sample = sample
        prev = self._update(sample, i + 1, i, self.this_order)
        self.lower_order_nums = min(self.lower_order_nums + 1, c.solver_order)
        self._step_index += 1
        return prev

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha_t, sigma_t = alpha_sigma(self._noise_sigmas(original, timesteps))
        return alpha_t * original + sigma_t * noise
