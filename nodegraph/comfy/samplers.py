"""k-diffusion-style sampler steps on the σ parametrisation, as ComfyUI runs them (comfy/k_diffusion/sampling.py).

Every sampler has one signature: `step(name, x, denoised, sigmas, i, noise, history, model) -> (x_next, history)`,
where `denoised` is the guided model's x₀ estimate at σ = sigmas[i], `model(x, σ)` gives it anywhere else (for
second-order samplers), `noise` the sampler's own generator
(ComfyUI's `default_noise_sampler`: a fresh CPU generator seeded with the KSampler seed) and `history` what a
multistep method carries between steps (None at the first step). x lives in σ-space: x = x₀ + σ·ε.
uni_pc / uni_pc_bh2 live in nodegraph/comfy/uni_pc.py (ComfyUI runs them outside k-diffusion).
"""

from __future__ import annotations

import math

# "ddim" is ComfyUI's alias for Euler (comfy/samplers.py `sampler_object`), normally paired with ddim_uniform;
# heun, dpm_2, dpm_2_ancestral and dpmpp_2s_ancestral evaluate the model a second time inside the step
# (`model(x, σ) -> x₀`); uni_pc's corrector uses the next step's model evaluation instead.
# dpmpp_sde and the 2M/3M SDE samplers (and their _gpu twins) live in nodegraph/comfy/sde.py (Brownian-tree noise).
SAMPLERS = ("euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m", "dpmpp_2s_ancestral",
            "ddim", "uni_pc", "uni_pc_bh2", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
            "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "res_multistep")
SECOND_ORDER = ("heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_sde_gpu")
# samplers that draw noise: they need ComfyNoise's generator (the SDE ones read its seed for their Brownian tree)
ANCESTRAL = ("euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde",
             "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu")
# KSampler / KSamplerAdvanced schedule these over one more step and drop the penultimate σ
# (comfy/samplers.py `KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS`); SamplerCustom's σ nodes do not.
DISCARD_PENULTIMATE_SIGMA = ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2")
LMS_ORDER = 4


def to_d(x, sigma, denoised):
    """dx/dσ of the probability-flow ODE: (x − x₀) / σ (Karras et al. 2022, eq. 4 with s(t) = 1)."""
    return (x - denoised) / sigma


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(σ_down, σ_up): the deterministic step target and the noise re-added (k-diffusion `get_ancestral_step`)."""
    if not eta:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2) ** 0.5)
    return (sigma_next ** 2 - sigma_up ** 2) ** 0.5, sigma_up


def _randn(x, noise):
    import torch

    return torch.randn(x.shape, generator=noise, dtype=x.dtype, device="cpu").to(x.device)


def step(name: str, x, denoised, sigmas, i: int, noise=None, history=None, model=None):
    """One step of sampler `name` from σ_i to σ_{i+1}; returns (x_next, history for the next step)."""
    sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
    if name == "heun":
        # Karras et al. (2022), Algorithm 2 (no churn): Euler, then the trapezoidal correction; Euler into σ = 0.
        d = to_d(x, sigma, denoised)
        x_euler = x + d * (sigma_next - sigma)
        if sigma_next == 0:
            return x_euler, None
        d_next = to_d(x_euler, sigma_next, model(x_euler, sigma_next))
        return x + (d + d_next) / 2 * (sigma_next - sigma), None
    if name in ("dpm_2", "dpm_2_ancestral"):
        # k-diffusion's DPM-Solver-2 (Lu et al. 2022, Alg. 1 with the midpoint in log σ); the ancestral variant
        # steps to σ_down and re-adds σ_up of fresh noise.
        target, sigma_up = (sigma_next, 0.0) if name == "dpm_2" else ancestral_step(sigma, sigma_next)
        d = to_d(x, sigma, denoised)
        if target == 0:
            return x + d * (target - sigma), None
        sigma_mid = math.exp((math.log(sigma) + math.log(target)) / 2)
        x_mid = x + d * (sigma_mid - sigma)
        x = x + to_d(x_mid, sigma_mid, model(x_mid, sigma_mid)) * (target - sigma)
        return (x + _randn(x, noise) * sigma_up if sigma_up else x), None
    if name in ("euler", "ddim"):
        # Karras et al. (2022), Algorithm 2 without churn: one Euler step of the ODE.
        return x + to_d(x, sigma, denoised) * (sigma_next - sigma), None
    if name == "euler_ancestral":
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next)
        if sigma_down == 0:
            return denoised, None
        x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        return x + _randn(x, noise) * sigma_up, None
    if name == "dpmpp_2s_ancestral":
        return _dpmpp_2s_ancestral(x, denoised, sigma, sigma_next, noise, model), None
    if name == "dpmpp_2m":
        return _dpmpp_2m(x, denoised, sigmas, i, history)
    if name in ("uni_pc", "uni_pc_bh2"):
        from nodegraph.comfy.uni_pc import uni_pc_step

        return uni_pc_step(x, denoised, sigmas, i, history, variant="bh2" if name == "uni_pc_bh2" else "bh1")
    if name == "lms":
        return _lms(x, denoised, sigmas, i, history)
    if name == "res_multistep":
        return _res_multistep(x, denoised, sigmas, i, history)
    if "_sde" in name:
        from nodegraph.comfy.sde import sde_step

        return sde_step(name, x, denoised, sigmas, i, noise, history, model)
    raise ValueError(f"unknown sampler {name!r}; supported: {', '.join(SAMPLERS)}")


def _dpmpp_2s_ancestral(x, denoised, sigma: float, sigma_next: float, noise, model):
    """DPM-Solver++(2S), Lu et al. (2022) Algorithm 1 with r = 1/2 on x₀ predictions, made ancestral as k-diffusion's
    `sample_dpmpp_2s_ancestral` (eta = s_noise = 1, as ComfyUI calls it): a second-order step in λ = −log σ to
    σ_down, the model evaluated once more at the λ-midpoint, then σ_up of fresh noise unless σ_next is 0."""
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next)
    if sigma_down == 0:  # the last step: Euler into σ = 0, which lands on the x₀ estimate
        x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
    else:
        h = math.log(sigma) - math.log(sigma_down)  # λ_down − λ > 0
        sigma_mid = math.exp(-(-math.log(sigma) + h / 2))
        x_mid = (sigma_mid / sigma) * x - math.expm1(-h / 2) * denoised
        x = (sigma_down / sigma) * x - math.expm1(-h) * model(x_mid, sigma_mid)
    if sigma_next > 0:
        x = x + _randn(x, noise) * sigma_up
    return x


def _dpmpp_2m(x, denoised, sigmas, i, old_denoised):
    """DPM-Solver++(2M), Lu et al. (2022) Algorithm 2, in λ = −log σ; the first and the final step are first order."""
    sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
    if sigma_next == 0:
        return denoised, denoised
    t, t_next = -math.log(sigma), -math.log(sigma_next)
    h = t_next - t
    if old_denoised is None:
        target = denoised
    else:
        r = (t - (-math.log(float(sigmas[i - 1])))) / h
        target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
    return (sigma_next / sigma) * x - math.expm1(-h) * target, denoised


def _res_multistep(x, denoised, sigmas, i, old_denoised):
    """RES's second-order multistep exponential integrator (Zhang et al. 2023, arXiv:2308.02157) on x₀ estimates,
    as k-diffusion's `res_multistep` with eta 0 (ComfyUI's `res_multistep`): in λ = −log σ with h = λ_next − λ and
    c₂ = (λ_prev − λ) / h, x_next = e^(−h)·x + h·(b₁·x₀ + b₂·x₀_prev), b₂ = φ₂(−h)/c₂, b₁ = φ₁(−h) − b₂, where
    φ₁(z) = (e^z − 1)/z and φ₂(z) = (φ₁(z) − 1)/z; the first step and the step into σ = 0 are Euler steps."""
    sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
    if sigma_next == 0 or old_denoised is None:
        return x + to_d(x, sigma, denoised) * (sigma_next - sigma), denoised
    t, t_next, t_prev = -math.log(sigma), -math.log(sigma_next), -math.log(float(sigmas[i - 1]))
    h = t_next - t
    c2 = (t_prev - t) / h
    phi1 = math.expm1(-h) / -h
    phi2 = (phi1 - 1.0) / -h
    b2 = phi2 / c2 if c2 else 0.0  # a repeated σ (c₂ = 0): first order
    b1 = phi1 - b2
    return math.exp(-h) * x + h * (b1 * denoised + b2 * old_denoised), denoised


def _lms(x, denoised, sigmas, i, ds):
    """Linear multistep (order ≤ 4): ∫ of the Lagrange polynomial through the last derivatives over [σ_i, σ_{i+1}]."""
    ds = ([] if ds is None else list(ds)) + [to_d(x, float(sigmas[i]), denoised)]
    ds = ds[-LMS_ORDER:]
    order = len(ds)
    s = [float(v) for v in sigmas]
    for j, d in enumerate(reversed(ds)):
        x = x + _lms_coefficient(order, s, i, j) * d
    return x, ds


def _lms_coefficient(order: int, s: list[float], i: int, j: int) -> float:
    """∫_{σ_i}^{σ_{i+1}} ∏_{k≠j} (τ − σ_{i−k}) / (σ_{i−j} − σ_{i−k}) dτ, integrated exactly (it is a polynomial)."""
    from numpy.polynomial import Polynomial

    basis = Polynomial([1.0])
    for k in range(order):
        if k != j:
            basis = basis * Polynomial([-s[i - k], 1.0]) / (s[i - j] - s[i - k])
    antiderivative = basis.integ()
    return float(antiderivative(s[i + 1]) - antiderivative(s[i]))
