"""ComfyUI's sigma schedules for ε-prediction models with SD's discrete noise table (torch; imported lazily).

Facts from ComfyUI (comfy/model_sampling.py `ModelSamplingDiscrete`, comfy/samplers.py `calculate_sigmas`,
comfy/k_diffusion/sampling.py), see shared/notes/comfyui-facts.md. The table is SD's scaled-linear betas
(0.00085 → 0.012, 1000 steps) computed in float64 and stored as float32 σ(t) = √((1 − ᾱ_t) / ᾱ_t).
"""

from __future__ import annotations

import functools
import math

SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform")


@functools.lru_cache(maxsize=4)
def sigma_table(beta_start: float = 0.00085, beta_end: float = 0.012, steps: int = 1000):
    """σ(t) for t = 0 … steps−1, shape (steps,), float32 (ComfyUI's `ModelSamplingDiscrete._register_schedule`).
    Cached: every step asks for it; callers never modify it."""
    import numpy as np
    import torch

    betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    return torch.from_numpy(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


def sigma_at(table, t):
    """σ at a fractional timestep: linear interpolation of log σ between the two table entries."""
    import torch

    t = torch.as_tensor(t, dtype=torch.float32).clamp(0, len(table) - 1)
    low = t.floor().long()
    high = t.ceil().long()
    w = t.frac()
    log_sigma = (1 - w) * table.log()[low] + w * table.log()[high]
    return log_sigma.exp()


def timestep_of(table, sigma) -> int:
    """The table index whose log σ is nearest (the integer t the UNet receives, as ComfyUI passes it)."""
    import torch

    return int((table.log() - torch.as_tensor(sigma, dtype=torch.float32).log()).abs().argmin())


def sigmas_for(scheduler: str, steps: int, table=None, flow=None):
    """The σ schedule of `steps` steps, highest first, ending with 0 (length steps + 1), float32. `flow`: a flow
    model's sampling (nodegraph/comfy/flow.py `FlowSampling`), whose own `table()` is used."""
    import torch

    table = flow.table() if flow is not None else sigma_table() if table is None else table
    sigma_min, sigma_max = float(table[0]), float(table[-1])
    if steps <= 0:
        return torch.zeros(0)
    if scheduler in ("normal", "sgm_uniform") and flow is not None:
        # continuous σ(t) between timestep(σmax) and timestep(σmin) (comfy/samplers.py `normal_scheduler`)
        start, end = float(flow.timestep(sigma_max)), float(flow.timestep(sigma_min))
        ts = torch.linspace(start, end, steps + 1)[:-1] if scheduler == "sgm_uniform" else torch.linspace(start, end, steps)
        return torch.cat([flow.sigma(ts), torch.zeros(1)])
    if scheduler in ("normal", "sgm_uniform"):
        # Timesteps evenly spaced from t(σmax) to t(σmin); sgm_uniform takes steps + 1 points and drops the last.
        start, end = len(table) - 1, 0
        ts = torch.linspace(start, end, steps + 1)[:-1] if scheduler == "sgm_uniform" else torch.linspace(start, end, steps)
        return torch.cat([torch.stack([sigma_at(table, t) for t in ts]), torch.zeros(1)])
    if scheduler == "karras":
        # Karras et al. (2022), eq. 5 with ρ = 7.
        rho = 7.0
        ramp = torch.linspace(0, 1, steps)
        low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        return torch.cat([(high + ramp * (low - high)) ** rho, torch.zeros(1)])
    if scheduler == "exponential":
        return torch.cat([torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp(), torch.zeros(1)])
    if scheduler == "simple":
        stride = len(table) / steps
        return torch.cat([torch.stack([table[-(1 + int(x * stride))] for x in range(steps)]), torch.zeros(1)])
    if scheduler == "ddim_uniform":
        stride = max(len(table) // steps, 1)
        picked = [float(table[x]) for x in range(1, len(table), stride)]
        return torch.tensor([0.0] + picked, dtype=torch.float32).flip(0)
    raise ValueError(f"unknown scheduler {scheduler!r}; ComfyUI's are {', '.join(SCHEDULERS)}")


def ksampler_sigmas(scheduler: str, steps: int, denoise: float = 1.0, start: int = 0, end: int | None = None,
                    force_full_denoise: bool = False, table=None, discard_penultimate: bool = False, flow=None):
    """The σ a KSampler / KSamplerAdvanced runs over.

    denoise < 1: the schedule of int(steps / denoise) steps, keeping its last steps + 1 σ (ComfyUI's
    `KSampler.set_steps`); denoise ≤ 0 gives no steps. KSamplerAdvanced: σ[:end + 1] (last σ set to 0 when
    `force_full_denoise`), then σ[start:] (comfy/samplers.py `KSampler.sample`). `discard_penultimate`
    (ComfyUI's rule for dpm_2 and uni_pc samplers, `KSampler.calculate_sigmas`): each schedule is made over
    one more step and its penultimate σ dropped, before the denoise tail is taken. `flow`: as in `sigmas_for`.
    """
    import torch

    def schedule(n):
        if not discard_penultimate:
            return sigmas_for(scheduler, n, table, flow)
        longer = sigmas_for(scheduler, n + 1, table, flow)
        return torch.cat([longer[:-2], longer[-1:]])

    if denoise <= 0:
        return torch.zeros(0)
    if denoise < 1:
        sigmas = schedule(int(steps / denoise))[-(steps + 1):]
    else:
        sigmas = schedule(steps)
    if end is not None and end < len(sigmas) - 1:
        sigmas = sigmas[:end + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start > 0:
        sigmas = sigmas[start:] if start < len(sigmas) - 1 else torch.zeros(0)
    return sigmas
