"""ComfyUI's stochastic DPM-Solver++ samplers and their Brownian-tree noise (comfy/k_diffusion/sampling.py).

* Noise: k-diffusion's `BrownianTreeNoiseSampler` — one `torchsde.BrownianTree` on the CPU over
  [σmin, σmax] of the schedule's positive σ, w₀ = 0 of the latents' shape, entropy = the KSampler's seed; the
  noise between σ_a and σ_b is (W(σ_b) − W(σ_a)) / √|σ_b − σ_a| (so the draws of one run are correlated as a
  Brownian path, not independent). The `_gpu` variants build the tree on the sampling device in ComfyUI; nodegraph
  builds it on the CPU always, so they equal ComfyUI run on the CPU.
* dpmpp_sde: DPM-Solver++ (stochastic, Lu et al. 2022 with k-diffusion's ancestral noise), r = ½, η = 1: an
  ancestral half step in λ = −log σ to σ_s = √(σ·σ_next), the model evaluated there, then the ancestral full step
  with that x₀ estimate; into σ = 0 the step lands on x₀.
* dpmpp_2m_sde / dpmpp_3m_sde: the multistep SDE solvers (midpoint correction; third order from the third step),
  η = 1, noise √(1 − e^(−2h)) · σ_next; for ε-models every α = σ·e^λ is 1.
torchsde is an optional dependency (`pip install torchsde`); a run without it is refused with that message.
"""

from __future__ import annotations

import math

SDE_SAMPLERS = ("dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu")


class BrownianNoise:
    """k-diffusion's BrownianTreeNoiseSampler on the CPU: `noise(σ_a, σ_b)` is a unit-variance draw shaped as x."""

    def __init__(self, x, sigmas, seed: int):
        import torch

        try:
            import torchsde
        except ImportError:
            raise ValueError("ComfyUI's SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde) draw their noise from "
                             "torchsde's Brownian tree, as ComfyUI does; install it: pip install torchsde") from None
        positive = sigmas[sigmas > 0]
        t0, t1 = positive.min().float().cpu(), sigmas.max().float().cpu()
        self.shape, self.device, self.dtype = x.shape, x.device, x.dtype
        self.tree = torchsde.BrownianTree(t0, torch.zeros(x.shape, dtype=torch.float32), t1, entropy=seed)

    def __call__(self, sigma, sigma_next):
        import torch

        a, b = torch.tensor(float(sigma)), torch.tensor(float(sigma_next))  # float32, as ComfyUI's σ
        low, high, sign = (a, b, 1) if a < b else (b, a, -1)
        w = self.tree(low, high) * sign  # W(b) − W(a)
        return (w / (b - a).abs().sqrt()).to(device=self.device, dtype=self.dtype)


def _ancestral(sigma: float, sigma_next: float) -> tuple[float, float]:
    from nodegraph.comfy.samplers import ancestral_step

    return ancestral_step(sigma, sigma_next)


def sde_step(name: str, x, denoised, sigmas, i: int, noise, history, model):
    """One step of a ComfyUI SDE sampler; `noise` is ComfyNoise's generator (its seed seeds the tree), `history`
    carries the tree and the multistep memory ({} before the first step)."""
    history = dict(history or {})
    if "tree" not in history:
        history["tree"] = BrownianNoise(x, sigmas, noise.initial_seed())
    tree = history["tree"]
    sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
    if name.startswith("dpmpp_sde"):
        return _dpmpp_sde(x, denoised, sigma, sigma_next, tree, model), history
    h = None
    if sigma_next == 0:
        x = denoised
    else:
        h = math.log(sigma) - math.log(sigma_next)  # λ_next − λ, λ = −log σ
        # ε-models: α = σ·e^λ = 1; η = 1, so h_η = 2h
        x = (sigma_next / sigma) * math.exp(-h) * x - math.expm1(-2 * h) * denoised
        x = x + _multistep(name, denoised, h, history)
        x = x + tree(sigma, sigma_next) * sigma_next * math.sqrt(-math.expm1(-2 * h))
    history.update(d2=history.get("d1"), d1=denoised, h2=history.get("h1"), h1=h)
    return x, history


def _multistep(name: str, denoised, h: float, history: dict):
    """The 2M / 3M corrections from the previous x₀ estimates (0 at the first step)."""
    h_eta, h1, h2 = 2 * h, history.get("h1"), history.get("h2")
    phi_2 = math.expm1(-h_eta) / h_eta + 1
    if name.startswith("dpmpp_3m") and h2 is not None:
        r0, r1 = h1 / h, h2 / h
        d1_0 = (denoised - history["d1"]) / r0
        d1_1 = (history["d1"] - history["d2"]) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi_3 = phi_2 / h_eta - 0.5
        return phi_2 * d1 - phi_3 * d2
    if h1 is None:
        return 0.0
    r = h1 / h
    if name.startswith("dpmpp_3m"):  # its second step: 2M SDE with the φ₂ correction
        return phi_2 * (denoised - history["d1"]) / r
    return 0.5 * (-math.expm1(-h_eta)) * (1 / r) * (denoised - history["d1"])  # midpoint


def _dpmpp_sde(x, denoised, sigma: float, sigma_next: float, tree, model):
    if sigma_next == 0:
        return denoised
    sigma_mid = math.sqrt(sigma * sigma_next)  # λ midpoint (r = ½)
    down, up = _ancestral(sigma, sigma_mid)
    x_mid = (down / sigma) * x + (1 - down / sigma) * denoised + tree(sigma, sigma_mid) * up
    denoised_mid = model(x_mid, sigma_mid)
    down, up = _ancestral(sigma, sigma_next)
    return (down / sigma) * x + (1 - down / sigma) * denoised_mid + tree(sigma, sigma_next) * up
