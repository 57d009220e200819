"""LMS: the linear multistep sampler of k-diffusion (Crowson), after Karras et al. 2022: an Adams-Bashforth
style method on the probability-flow ODE whose weights integrate the Lagrange basis polynomials through the
last (up to 4) sigmas.

Matches diffusers' `LMSDiscreteScheduler` (0.42.1). diffusers integrates with scipy's adaptive quadrature;
the integrand is a polynomial of degree <= 3, so Gauss-Legendre with 4 nodes is exact and needs no scipy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import SigmaScheduler, exponential_sigmas, karras_sigmas, sigma_bounds, sigma_to_t
from .config import NO_BETA_SIGMAS, Opt, common_options
from .euler import discrete_sigma_schedule

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(4)
MAX_ORDER = 4  # diffusers' default `order` argument of LMSDiscreteScheduler.step


def lms_coefficient(sigmas: np.ndarray, order: int, i: int, j: int) -> float:
    """Integral over [sigmas[i], sigmas[i+1]] of the Lagrange basis polynomial that is 1 at sigmas[i-j] and
    0 at the other sigmas[i-k], k < order."""
    a, b = float(sigmas[i]), float(sigmas[i + 1])
    tau = (a + b) / 2 + (b - a) / 2 * _NODES
    basis = np.ones_like(tau)
    for k in range(order):
        if k != j:
            basis *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
    return float((b - a) / 2 * np.dot(_WEIGHTS, basis))


class LMSDiscreteScheduler(SigmaScheduler):
    """Stateful: keeps the last four ODE derivatives; `set_timesteps` forgets them."""

    class_name = "LMSDiscreteScheduler"
    short_name = "lms"
    options = {
        **common_options("linspace"),
        "use_karras_sigmas": Opt(False),
        "use_exponential_sigmas": Opt(False),
        "use_beta_sigmas": NO_BETA_SIGMAS,
    }

    def __init__(self, cfg=None, overrides=None):
        super().__init__(cfg, overrides)
        self._full_sigmas()
        self.derivatives: list[torch.Tensor] = []

    def _set_timesteps(self, n: int, device) -> None:
        c = self.config
        ts, sig, log_sigmas = discrete_sigma_schedule(self, n)
        if c.use_karras_sigmas:  # diffusers' LMS ignores a configured sigma_min/sigma_max here
            sig = karras_sigmas(sig[-1].item(), sig[0].item(), n)
            ts = sigma_to_t(sig, log_sigmas)
        elif c.use_exponential_sigmas:
            sig = exponential_sigmas(*sigma_bounds(c, self.explicit_config, sig[-1].item(), sig[0].item()), n)
            ts = sigma_to_t(sig, log_sigmas)
        self._set_sigmas(np.concatenate([sig, [0.0]]), ts, device)
        self.derivatives = []

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        i = self._ensure_step_index(timestep)
        sigma = self.sigmas[i]
        x0 = self._denoised(model_output, sample, sigma)
        self.derivatives.append((sample - x0) / sigma)
        if len(self.derivatives) > MAX_ORDER:
            self.derivatives.pop(0)
        order = min(i + 1, MAX_ORDER)
        sigmas = self.sigmas.double().numpy()
        coeffs = [lms_coefficient(sigmas, order, i, j) for j in range(order)]
        self._step_index += 1
        return sample + sum(c * d for c, d in zip(coeffs, reversed(self.derivatives)))
