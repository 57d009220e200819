"""What the eight schedulers share: beta tables, timestep spacing, sigma helpers, noise, the base classes.

Every scheduler is built from a diffusers ``scheduler_config.json`` dict with diffusers' ``from_config``
semantics and then computes with the same float32 tables and the same order of operations as diffusers
0.42.1, so that the same loop gives the same numbers. diffusers itself is never imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from .config import FrozenConfig, Opt, SchedulerConfigError, resolve_config

# ----------------------------------------------------------------------------------------------- tables


def _alpha_bar_betas(n: int, alpha_bar, max_beta: float = 0.999) -> torch.Tensor:
    """Betas that discretise a continuous cumulative-alpha curve (Nichol & Dhariwal 2021, eq. 17)."""
    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float32)


def _laplace_alpha_bar(t: float) -> float:
    lmb = -0.5 * math.copysign(1, 0.5 - t) * math.log(1 - 2 * math.fabs(0.5 - t) + 1e-6)
    snr = math.exp(lmb)
    return math.sqrt(snr / (1 + snr))


def make_betas(cfg: Mapping[str, Any]) -> torch.Tensor:
    """The float32 beta table of a config (`trained_betas` wins over the named schedule, as in diffusers)."""
    n, b0, b1 = cfg["num_train_timesteps"], cfg["beta_start"], cfg["beta_end"]
    if cfg["trained_betas"] is not None:
        betas = torch.tensor(cfg["trained_betas"], dtype=torch.float32)
    elif cfg["beta_schedule"] == "linear":
        betas = torch.linspace(b0, b1, n, dtype=torch.float32)
    elif cfg["beta_schedule"] == "scaled_linear":  # linear in sqrt(beta): the latent-diffusion schedule
        betas = torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float32) ** 2
    elif cfg["beta_schedule"] == "squaredcos_cap_v2":
        betas = _alpha_bar_betas(n, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2)
    elif cfg["beta_schedule"] == "laplace":
        betas = _alpha_bar_betas(n, _laplace_alpha_bar)
    else:  # "sigmoid"
        betas = torch.sigmoid(torch.linspace(-6, 6, n)) * (b1 - b0) + b0
    if cfg.get("rescale_betas_zero_snr"):
        betas = rescale_zero_terminal_snr(betas)
    return betas


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has zero SNR (Lin et al. 2023, Algorithm 1)."""
    sqrt_ab = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab -= last
    sqrt_ab *= first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[0:1], ab[1:] / ab[:-1]])
    return 1 - alphas


def spaced_timesteps(spacing: str, num_train: int, n: int, offset: int, *, extra_point: bool = False,
                     round_linspace: bool = True, last: int | None = None) -> np.ndarray:
    """Descending float64 timesteps of one of diffusers' spacings (Lin et al. 2023, Table 2).

    `extra_point`: UniPC and DPM-Solver place n+1 points and drop the final one. `last` is DPM-Solver's
    clipped end of the schedule. The sigma schedulers keep linspace values unrounded.
    """
    last = num_train if last is None else last
    k = n + 1 if extra_point else n
    if spacing == "linspace":
        ts = np.linspace(0, last - 1, k)
        ts = (ts.round() if round_linspace else ts)[::-1]
    elif spacing == "leading":
        ts = (np.arange(0, k) * (last // k)).round()[::-1] + offset
    else:  # trailing
        ts = np.round(np.arange(last, 0, -num_train / n)) - 1
    return ts[:n].copy()


def train_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """float32 sigma_t = sqrt((1 - alpha_bar) / alpha_bar) for every training step, ascending in t."""
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).numpy()


def interp_sigmas(timesteps: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    return np.interp(timesteps, np.arange(0, len(sigmas)), sigmas)


def sigma_to_t(sigmas: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timesteps of `sigmas`, interpolating linearly in log sigma (vectorised)."""
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high]), 0, 1)
    return ((1 - w) * low + w * high).reshape(sigmas.shape)


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Noise levels evenly spaced in sigma^(1/rho) (Karras et al. 2022, eq. 5)."""
    ramp = np.linspace(0, 1, n)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv + ramp * (min_inv - max_inv)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def sigma_bounds(cfg: Mapping[str, Any], explicit: Mapping[str, Any], lo: float, hi: float) -> tuple[float, float]:
    """`sigma_min`/`sigma_max` from the config, else (lo, hi).

    diffusers reads them with `hasattr(self.config, ...)`, which also sees json keys the class does not
    declare; so a DPM-Solver built from a json that sets `sigma_min` uses it.
    """
    smin = cfg.get("sigma_min", explicit.get("sigma_min"))
    smax = cfg.get("sigma_max", explicit.get("sigma_max"))
    return (lo if smin is None else float(smin)), (hi if smax is None else float(smax))


def alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) of the VP process whose noise-to-signal ratio is `sigma`."""
    alpha_t = 1 / (sigma**2 + 1) ** 0.5
    return alpha_t, sigma * alpha_t


def dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Clamp x0 to the `ratio` quantile of |x0| per sample and rescale (Imagen, Saharia et al. 2022)."""
    dtype, (b, c, *rest) = x0.dtype, x0.shape
    flat = x0 if dtype in (torch.float32, torch.float64) else x0.float()  # quantile needs float32+
    flat = flat.reshape(b, c * int(np.prod(rest)))
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(b, c, *rest).to(dtype)


def randn(shape: torch.Size, generator: torch.Generator | None, device: torch.device,
          dtype: torch.dtype) -> torch.Tensor:
    """Gaussian noise drawn where the generator lives, then moved: a CPU generator gives the same numbers on
    every device (diffusers' `randn_tensor` for one generator)."""
    where = device if generator is None or generator.device.type == device.type else generator.device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


def expand_to(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-sample vector reshaped to broadcast against a (B, ...) tensor."""
    v = v.flatten()
    return v.reshape(v.shape + (1,) * (ndim - 1))


# ---------------------------------------------------------------------------------------------- classes


class BaseScheduler:
    """The contract every scheduler follows (docs/architecture.md, "Schedulers").

    `config` is the resolved config (every key the class knows, defaults filled in); `explicit_config` the
    keys that came from the json and overrides. State a run accumulates lives on the instance and is reset by
    `set_timesteps`, so two runs that each create their scheduler never share it.
    """

    class_name: ClassVar[str]
    short_name: ClassVar[str]
    options: ClassVar[dict[str, Opt]]
    order: ClassVar[int] = 1
    timestep_dtype: ClassVar[torch.dtype] = torch.int64
    zero_snr_floor: ClassVar[bool] = False  # diffusers' sigma-based classes pin the last alpha_bar to 2^-24
    init_noise_sigma: float | torch.Tensor = 1.0

    def __init__(self, cfg: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None):
        config, explicit = resolve_config(self.class_name, self.options, cfg or {}, overrides or {})
        self.config, self.explicit_config = FrozenConfig(config), FrozenConfig(explicit)
        self.betas = make_betas(config)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        if self.zero_snr_floor and config.get("rescale_betas_zero_snr"):
            self.alphas_cumprod[-1] = 2**-24  # keeps sigma finite at the last step
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=self.timestep_dtype)
        self._begin_index: int | None = None
        self._step_index: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.explicit_config)!r})"

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None) -> None:
        """Choose the inference timesteps and reset every piece of run state."""
        n, big_n = num_inference_steps, self.config.num_train_timesteps
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= big_n:
            raise SchedulerConfigError(f"{self.class_name}: `num_inference_steps` must be an integer from 1 to "
                                       f"num_train_timesteps={big_n}; got {n!r}.")
        self.num_inference_steps = n
        self._begin_index = self._step_index = None
        self._set_timesteps(n, device)

    def _set_timesteps(self, n: int, device: torch.device | str | None) -> None:
        raise NotImplementedError

    def set_begin_index(self, begin_index: int = 0) -> None:
        """img2img starts part-way: the first `step` is at index `begin_index` of `timesteps`."""
        self._begin_index = begin_index

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        return sample

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        """One denoising step from `sample` at `timestep`; returns the previous (less noisy) sample.
        `generator` feeds the stochastic schedulers; `eta` is read by DDIM only."""
        raise NotImplementedError

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x_0) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise."""
        ac = self.alphas_cumprod.to(device=original.device, dtype=original.dtype)
        timesteps = torch.as_tensor(timesteps).to(original.device)
        return (expand_to(ac[timesteps] ** 0.5, original.ndim) * original
                + expand_to((1 - ac[timesteps]) ** 0.5, original.ndim) * noise)

    def _require_timesteps(self) -> None:
        if self.num_inference_steps is None:
            raise RuntimeError(f"{self.class_name}: call set_timesteps(n) before step().")


class IndexedScheduler(BaseScheduler):
    """Schedulers that walk a sigma table by position: the index starts at the first step's timestep
    (or at `set_begin_index`) and then counts steps, as diffusers' `_step_index` does."""

    index_fallback_last: ClassVar[bool] = False  # DPM-Solver/UniPC take the last index for an unknown t
    sigmas: torch.Tensor

    def _index_for_timestep(self, timestep: Any, schedule: torch.Tensor | None = None) -> int:
        schedule = self.timesteps if schedule is None else schedule
        hits = (schedule == torch.as_tensor(timestep).to(schedule.device)).nonzero()
        if len(hits) == 0:
            if self.index_fallback_last:
                return len(self.timesteps) - 1
            raise ValueError(f"{self.class_name}: timestep {float(timestep)} is not one of this scheduler's "
                             "timesteps; pass the values of `scheduler.timesteps`.")
        # With a repeated first timestep diffusers takes the second match, so a schedule started half-way
        # (img2img) does not skip a sigma.
        return int(hits[1 if len(hits) > 1 else 0].item())

    def _ensure_step_index(self, timestep: Any) -> int:
        if self._step_index is None:
            self._require_timesteps()
            begin = self._begin_index
            self._step_index = begin if begin is not None else self._index_for_timestep(timestep)
        if self._step_index >= len(self.timesteps):
            # Also reached on the first step when the schedule starts with a repeated timestep (e.g. karras
            # sigmas on squaredcos_cap_v2): the second-match rule then starts at index 1.
            raise RuntimeError(f"{self.class_name}: step {self._step_index + 1} requested but the schedule has "
                               f"{len(self.timesteps)} timesteps; call set_timesteps again to start a new run, or "
                               "set_begin_index(0) if the schedule starts with a repeated timestep.")
        return self._step_index

    @property
    def step_index(self) -> int | None:
        return self._step_index

    def _noise_sigmas(self, original: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The sigma of each timestep in `timesteps`, shaped to broadcast against `original`."""
        sigmas = self.sigmas.to(device=original.device, dtype=original.dtype)
        timesteps = torch.as_tensor(timesteps).reshape(-1).to(original.device)
        if self._begin_index is None:
            schedule = self.timesteps.to(original.device)
            idx = [self._index_for_timestep(t, schedule) for t in timesteps]
        else:
            idx = [self._step_index if self._step_index is not None else self._begin_index] * timesteps.shape[0]
        return expand_to(sigmas[idx], original.ndim)


class SigmaScheduler(IndexedScheduler):
    """The k-diffusion style schedulers (Euler, Euler ancestral, LMS): x = x0 + sigma * noise, so the model
    input is scaled by 1/sqrt(sigma^2 + 1) and the first latents by `init_noise_sigma`. Timesteps stay float."""

    timestep_dtype = torch.float32

    def _set_sigmas(self, sigmas: np.ndarray, timesteps: np.ndarray, device) -> None:
        self.sigmas = torch.from_numpy(sigmas.astype(np.float32))
        self.timesteps = torch.from_numpy(timesteps.astype(np.float32)).to(device=device)

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        max_sigma = self.sigmas.max()
        if self.config.timestep_spacing in ("linspace", "trailing"):
            return max_sigma
        return (max_sigma**2 + 1) ** 0.5  # leading never reaches the last training step

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        sigma = self.sigmas[self._ensure_step_index(timestep)]
        return sample / (sigma**2 + 1) ** 0.5

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return original + noise * self._noise_sigmas(original, timesteps)

    def _denoised(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The model's estimate of x0 at noise level sigma, whatever it was trained to predict."""
        pred = self.config.prediction_type
        if pred == "epsilon":
            return sample - sigma * model_output
        if pred == "v_prediction":
            return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
        return model_output

    def _full_sigmas(self) -> None:
        """Before set_timesteps: every training sigma, descending, then 0 (what diffusers starts from)."""
        sig = train_sigmas(self.alphas_cumprod)
        self.sigmas = torch.from_numpy(np.concatenate([sig[::-1], [0.0]]).astype(np.float32))
