"""Flow matching: Lipman et al. 2023, "Flow Matching for Generative Modeling", on the rectified-flow path of
Liu et al. 2023 / Esser et al. 2024 (SD3): x_σ = (1 − σ)·x₀ + σ·ε, the model predicts the velocity v = ε − x₀,
and sampling is the explicit Euler method on dx/dσ = v from σ = 1 down to 0.

Matches diffusers' `FlowMatchEulerDiscreteScheduler` (0.42.1): the static `shift` σ' = sσ / (1 + (s − 1)σ) and the
resolution-dependent ("dynamic") shift with `mu` (Esser et al. 2024, §5.3.2), sigmas passed by the pipeline or
spaced between the shifted ends of the training table, timesteps = σ·1000, the step in float32 and cast back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .base import IndexedScheduler, exponential_sigmas, karras_sigmas, randn
from .config import NO_BETA_SIGMAS, FrozenConfig, Opt, SchedulerConfigError, resolve_config


def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                    max_shift: float = 1.15) -> float:
    """`mu` of the dynamic shift, linear in the number of image tokens (diffusers' `calculate_shift`)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


class FlowMatchEulerDiscreteScheduler(IndexedScheduler):
    """Deterministic Euler on the flow-matching ODE (stochastic re-noising with `stochastic_sampling`).

    `set_timesteps(n, sigmas=None, mu=None)`: Flux and Z-Image pass `sigmas` (linspace(1, 1/n, n)) and `mu`;
    SD3 passes neither. `mu` is required when the config has `use_dynamic_shifting`.
    """

    class_name = "FlowMatchEulerDiscreteScheduler"
    short_name = "flow_euler"
    timestep_dtype = torch.float32
    flow_matching = True
    options = {
        "num_train_timesteps": Opt(1000),
        "shift": Opt(1.0),
        "use_dynamic_shifting": Opt(False),
        "base_shift": Opt(0.5, kind="float?"),
        "max_shift": Opt(1.15, kind="float?"),
        "base_image_seq_len": Opt(256),
        "max_image_seq_len": Opt(4096),
        "invert_sigmas": Opt(False),
        "shift_terminal": Opt(None, kind="float?"),
        "use_karras_sigmas": Opt(False),
        "use_exponential_sigmas": Opt(False),
        "use_beta_sigmas": NO_BETA_SIGMAS,
        "time_shift_type": Opt("exponential", ("exponential", "linear")),
        "stochastic_sampling": Opt(False),
    }

    def __init__(self, cfg=None, overrides=None):  # no beta table: flow matching has none
        config, explicit = resolve_config(self.class_name, self.options, cfg or {}, overrides or {})
        self.config, self.explicit_config = FrozenConfig(config), FrozenConfig(explicit)
        self.num_inference_steps = None
        self._begin_index = self._step_index = None
        big_n, shift = config["num_train_timesteps"], config["shift"]
        # The training table, statically shifted here already: its ends bound the sigmas of a schedule that is
        # not passed in (so SD3's low end is shifted twice, as in diffusers).
        t = torch.from_numpy(np.linspace(1, big_n, big_n, dtype=np.float32)[::-1].copy())
        sigmas = t / big_n
        if not config["use_dynamic_shifting"]:
            sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.sigmas, self.timesteps = sigmas, sigmas * big_n
        self.sigma_min, self.sigma_max = sigmas[-1].item(), sigmas[0].item()

    def mu(self, image_seq_len: int) -> float:
        """The dynamic shift's `mu` for `image_seq_len` image tokens, from this config's bounds."""
        c = self.config
        return calculate_shift(image_seq_len, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None,
                      sigmas: Sequence[float] | None = None, mu: float | None = None) -> None:
        """Choose the schedule and reset the run state; `sigmas` (one per step) are shifted like the default."""
        c, n = self.config, num_inference_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SchedulerConfigError(f"{self.class_name}: `num_inference_steps` must be a positive integer; "
                                       f"got {n!r}.")
        if c.use_dynamic_shifting and mu is None:
            raise SchedulerConfigError(f"{self.class_name}: this config sets `use_dynamic_shifting`, so `mu` (the "
                                       "resolution-dependent shift) must be given with the steps.")
        if sigmas is not None and len(sigmas) != n:
            raise SchedulerConfigError(f"{self.class_name}: {len(sigmas)} `sigmas` given for {n} steps; give one "
                                       "sigma per step.")
        self.num_inference_steps = n
        if sigmas is None:  # float64 here, as in diffusers
            sig = np.linspace(self.sigma_max * c.num_train_timesteps, self.sigma_min * c.num_train_timesteps, n)
            sig = sig / c.num_train_timesteps
        else:
            sig = np.array(sigmas).astype(np.float32)
        sig = self._shifted(sig, mu)
        sig = torch.from_numpy(sig).to(dtype=torch.float32, device=device)
        if c.invert_sigmas:  # Mochi: the model counts from the other end
            sig = 1.0 - sig
            last = torch.ones(1, device=sig.device)
        else:
            last = torch.zeros(1, device=sig.device)
        self.timesteps = sig * c.num_train_timesteps
        self.sigmas = torch.cat([sig, last])
        self._begin_index = self._step_index = None

    def _shifted(self, sig: np.ndarray, mu: float | None) -> np.ndarray:
        c = self.config
        if c.use_dynamic_shifting:
            base = math.exp(mu) if c.time_shift_type == "exponential" else mu
            sig = base / (base + (1 / sig - 1) ** 1.0)
        else:
            sig = c.shift * sig / (1 + (c.shift - 1) * sig)
        if c.shift_terminal:  # stretch so that the last sigma is `shift_terminal` (LTX-Video)
            one_minus = 1 - sig
            sig = 1 - one_minus / (one_minus[-1] / (1 - c.shift_terminal))
        if c.use_karras_sigmas:
            sig = karras_sigmas(sig[-1].item(), sig[0].item(), len(sig))
        elif c.use_exponential_sigmas:
            sig = exponential_sigmas(sig[-1].item(), sig[0].item(), len(sig))
        return sig

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        """x_next = x + (σ_next − σ)·v, computed in float32, returned in the model output's dtype."""
        if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor) and not timestep.is_floating_point()):
            raise ValueError(f"{self.class_name}: pass one of `scheduler.timesteps` as the timestep, not a step "
                             "index.")
        i = self._ensure_step_index(timestep)
        sample = sample.to(torch.float32)
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        if self.config.stochastic_sampling:  # re-noise the x₀ estimate to the next level with fresh noise
            x0 = sample - sigma * model_output
            noise = randn(sample.shape, generator, sample.device, sample.dtype)
            prev = (1.0 - sigma_next) * x0 + sigma_next * noise
        else:
            prev = sample + (sigma_next - sigma) * model_output
        self._step_index += 1
        return prev.to(model_output.dtype)

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The forward process at `timesteps` (diffusers' `scale_noise`): σ·ε + (1 − σ)·x₀."""
        sigma = self._noise_sigmas(original, timesteps)
        return sigma * noise + (1.0 - sigma) * original
