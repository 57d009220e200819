"""UniPC as ComfyUI runs it for "uni_pc" (variant B(h) = h, "bh1") and "uni_pc_bh2" (B(h) = e^h − 1).

Zhao et al. (2023), "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models":
the multistep predictor UniP-p and corrector UniC-p on x₀ predictions, in the form of their Algorithm 2 (the
B(h) variants of Appendix; diffusers' `UniPCMultistepScheduler` with `predict_x0=True` is the same method). What
ComfyUI fixes (comfy/extra_samplers/uni_pc.py `sample_unipc`, comfy/samplers.py `sampler_object`):

* The solver runs in VP form: x_vp = x / √(1 + σ²), α = 1/√(1 + σ²), σ_vp = σ·α, λ = log α − log σ_vp (= −log σ);
  the schedule's σ are its times (`SigmaConvert`), computed in float32 as ComfyUI does.
* order = min(3, steps − 1); the first steps ramp up (order j into σ_j), lower_order_final lowers the last ones
  (min(order, steps + 1 − j)); the corrector runs after every step but the last, at the order of that step.
* A final σ of 0 is replaced by 0.001 (the last step stops there, first order, no corrector; no denoise-to-zero),
  and the result is divided by α of the final σ. With one step, order is 0: x comes back only rescaled.

In nodegraph's loop each iteration gets x where the model was evaluated (the predictor's output, uncorrected)
and x₀ there: the step first corrects the previous x with it (UniC), then predicts the next (UniP). `history`
carries the corrected x (VP form) and the last `order` x₀ estimates with their σ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FINAL_SIGMA = 0.001  # ComfyUI's stand-in for σ = 0, where λ would be infinite


@dataclass(frozen=True)
class UniPCHistory:
    x: Any                 # the corrected x at sigmas[-1], VP form (B, C, h, w)
    denoised: tuple        # x₀ estimates at `sigmas`, oldest first, at most `order` of them
    sigmas: tuple          # float32 0-d tensors


def vp(sigma):
    """(α, σ_vp, λ) of σ as ComfyUI's `SigmaConvert` computes them (float32; at σ = 0.001 λ is 6.93, not 6.91)."""
    import torch

    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    log_alpha = 0.5 * torch.log(1 / (sigma * sigma + 1))
    one_minus = 1.0 - torch.exp(2.0 * log_alpha)
    return torch.exp(log_alpha), torch.sqrt(one_minus), log_alpha - 0.5 * torch.log(one_minus)


def step_order(j: int, steps: int) -> int:
    """The order of the update into σ_j (1 ≤ j ≤ steps): warm-up j, then min(order, steps + 1 − j)."""
    order = min(3, steps - 1)
    return j if j < order else min(order, steps + 1 - j)


def uni_pc_step(x, denoised, sigmas, i: int, history: UniPCHistory | None, variant: str = "bh1"):
    """One iteration: x (σ-space) where the model gave `denoised` at σ_i → (x at σ_{i+1}, history).

    The x returned before the last step is the predictor's, to evaluate the model at; the last is the result.
    """
    import torch

    steps = len(sigmas) - 1
    times = sigmas.to(dtype=torch.float32, device="cpu").clone()
    if times[-1] == 0:
        times[-1] = FINAL_SIGMA
    if i == 0:  # ComfyUI: noise / √(1 + σ₀²); nothing to correct yet
        x_vp, kept, kept_sigmas = x / torch.sqrt(1.0 + times[0] ** 2), [denoised], [times[0]]
    else:  # UniC: correct the predicted x with the model's x₀ there
        x_vp = _update(history.x, history.denoised, history.sigmas, times[i], step_order(i, steps), variant,
                       denoised_t=denoised)
        kept, kept_sigmas = list(history.denoised) + [denoised], list(history.sigmas) + [times[i]]
    if steps == 1:  # order 0: ComfyUI makes no update
        return x_vp / vp(times[-1])[0], None
    keep = min(3, steps - 1)
    kept, kept_sigmas = tuple(kept[-keep:]), tuple(kept_sigmas[-keep:])
    x_next = _update(x_vp, kept, kept_sigmas, times[i + 1], step_order(i + 1, steps), variant)  # UniP
    if i + 1 == steps:
        return x_next / vp(times[-1])[0], None
    # the model sees x_vp·√(σ² + 1) (ComfyUI's `predict_eps_sigma`)
    return x_next * ((times[i + 1] ** 2 + 1) ** 0.5), UniPCHistory(x_vp, kept, kept_sigmas)


def _update(x, ds, ds_sigmas, sigma_t, order: int, variant: str, denoised_t=None):
    """UniP-order (denoised_t None) or UniC-order step from ds_sigmas[-1] to sigma_t, all in VP form.

    x_t = (σ_vp,t / σ_vp,0)·x − α_t·(e^{−h} − 1)·m₀ − α_t·B(h)·Σ ρ_k·D_k, with D_k = (m_k − m₀)/r_k the scaled
    differences of the earlier x₀ estimates (r_k = (λ_k − λ₀)/h) and, for the corrector, D = m_t − m₀ at r = 1;
    ρ solves R ρ = b, R_kj = r_j^(k−1), b_k = k!·h·φ_{k+1}(h)/B(h) (order 2 predictor / order 1 corrector: ρ = ½).
    """
    import torch

    alpha_t, std_t, lambda_t = vp(sigma_t)
    _, std_0, lambda_0 = vp(ds_sigmas[-1])
    m0 = ds[-1]
    h = lambda_t - lambda_0
    rks, d1s = [], []
    for k in range(1, order):
        rk = (vp(ds_sigmas[-(k + 1)])[2] - lambda_0) / h
        rks.append(rk)
        d1s.append((ds[-(k + 1)] - m0) / rk)
    rks = torch.stack([*rks, torch.tensor(1.0)])  # (order,)
    hh = -h  # x₀ prediction integrates in −λ
    h_phi_1 = torch.expm1(hh)
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    # b's recurrence nearly cancels for small h: float64, as ComfyUI computes it
    hh64 = hh.double()
    h_phi_k, b_h64, factorial = torch.expm1(hh64) / hh64 - 1, (hh64 if variant == "bh1" else torch.expm1(hh64)), 1
    rows, b = [], []
    for k in range(1, order + 1):
        rows.append(rks ** (k - 1))
        b.append(h_phi_k * factorial / b_h64)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh64 - 1 / factorial
    r_matrix, b = torch.stack(rows), torch.stack(b).float()  # (order, order), (order,)
    x_base = (std_t / std_0) * x - (alpha_t * h_phi_1) * m0
    if denoised_t is None:  # predictor
        if not d1s:
            return x_base
        rhos = [0.5] if order == 2 else torch.linalg.solve(r_matrix[:-1, :-1], b[:-1])
        return x_base - (alpha_t * b_h) * sum(rho * d for rho, d in zip(rhos, d1s))
    rhos = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(r_matrix, b)
    correction = sum((rho * d for rho, d in zip(rhos[:-1], d1s)), torch.zeros_like(m0)) + rhos[-1] * (denoised_t - m0)
    return x_base - (alpha_t * b_h) * correction
