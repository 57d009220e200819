"""TCD: Zheng et al. 2024, "Trajectory Consistency Distillation" (strategic stochastic sampling, eq. 9-10).

From x_t the model's estimates (x0, eps) give a point on the trajectory at the intermediate time
s = floor((1 - gamma) t_next) (DDIM's deterministic jump t -> s); fresh noise then brings it forward to t_next.
gamma (`eta` here, as in diffusers) = 0 is deterministic; gamma = 1 jumps to s = 0, LCM's multistep sampling.

Matches diffusers' `TCDScheduler` (0.42.1), given `original_inference_steps` in the config (the path every
pipeline takes). `step`'s `eta` defaults to 0.0 like every nodegraph scheduler's (diffusers' TCD step defaults
to 0.3, but StableDiffusionPipeline always passes its own `eta`, 0.0 by default; TCD's model cards use 0.3).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import randn
from .config import SchedulerConfigError
from .lcm import DistilledScheduler, distilled_options


class TCDScheduler(DistilledScheduler):
    """Stochastic when `eta` > 0: noise from the run's generator after every step but the last."""

    class_name = "TCDScheduler"
    short_name = "tcd"
    options = distilled_options()

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        self._require_timesteps()
        if not 0.0 <= eta <= 1.0:
            raise SchedulerConfigError(f"TCDScheduler: `eta` (gamma) must be from 0 to 1; got {eta}.")
        i, t, t_next = self._neighbours(timestep)
        t_next = torch.tensor(0) if t_next is None else t_next
        s = torch.floor((1 - eta) * t_next).to(dtype=torch.long)  # the intermediate time of eq. 9
        a_t, a_next, a_s = self.alphas_cumprod[t], self._alpha_bar(t_next), self.alphas_cumprod[s]
        x0, eps = self._x0_and_eps(model_output, sample, a_t)
        at_s = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps  # x_s on the trajectory (eq. 9)
        self._step_index += 1
        if eta == 0 or i == self.num_inference_steps - 1:
            return at_s
        noise = randn(model_output.shape, generator, model_output.device, at_s.dtype)
        return (a_next / a_s).sqrt() * at_s + (1 - a_next / a_s).sqrt() * noise  # forward to t_next (eq. 10)
