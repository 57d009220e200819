"""ComfyUI's dpmpp_sde, dpmpp_2m_sde and dpmpp_3m_sde(_gpu) with its Brownian-tree noise, against their loops
written out here from comfy/k_diffusion/sampling.py (`sample_dpmpp_sde`, `sample_dpmpp_3m_sde`,
`BrownianTreeNoiseSampler`: a torchsde.BrownianTree over [σmin, σmax] seeded with the KSampler's seed, on the CPU)
on a toy denoiser; then the `hiresfix_latent_workflow` template (dpmpp_sde, pinned package JSON) runs end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

torchsde = pytest.importorskip("torchsde")  # an optional test extra, as in ComfyUI's requirements

from templates import checkpoints_of, models_folder, run_template, small_sizes  # noqa: E402

SEED = 7


def toy_model(x, sigma):
    """A smooth stand-in for a guided denoiser: x₀(x, σ) = x · 0.8 / (1 + σ²) + 0.1."""
    return x * 0.8 / (1 + float(sigma) ** 2) + 0.1


def comfy_noise(x, sigmas, seed):
    """BrownianTreeNoiseSampler as ComfyUI builds it (cpu=True, identity transform)."""
    t0, t1 = sigmas[sigmas > 0].min(), sigmas.max()
    tree = torchsde.BrownianTree(t0, torch.zeros_like(x), t1, entropy=seed)

    def noise(a, b):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        low, high, sign = (a, b, 1) if a < b else (b, a, -1)
        return tree(low.float(), high.float()) * sign / (b - a).abs().sqrt()
    return noise


def ancestral(sigma_from, sigma_to):
    up = min(sigma_to, (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - up ** 2) ** 0.5, up


def comfy_dpmpp_sde(x, sigmas):
    noise = comfy_noise(x, sigmas, SEED)
    for i in range(len(sigmas) - 1):
        denoised = toy_model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = -sigmas[i].log(), -sigmas[i + 1].log()
        lam_mid = lam_s + 0.5 * (lam_t - lam_s)
        sigma_mid = (-lam_mid).exp()
        sd, su = ancestral((-lam_s).exp(), (-lam_mid).exp())
        h_ = -sd.log() - lam_s
        x2 = (-h_).exp() * x - (-h_).expm1() * denoised + noise(sigmas[i], sigma_mid) * su
        denoised_2 = toy_model(x2, sigma_mid)
        sd, su = ancestral((-lam_s).exp(), (-lam_t).exp())
        h_ = -sd.log() - lam_s
        x = (-h_).exp() * x - (-h_).expm1() * denoised_2 + noise(sigmas[i], sigmas[i + 1]) * su
    return x


def comfy_dpmpp_3m_sde(x, sigmas, third_order=True):
    noise = comfy_noise(x, sigmas, SEED)
    d_1 = d_2 = h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = toy_model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = sigmas[i].log() - sigmas[i + 1].log()
            h_eta = 2 * h
            x = sigmas[i + 1] / sigmas[i] * (-h).exp() * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None and third_order:
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * (d1_0 - d1_1) / (r0 + r1)
            elif h_1 is not None and third_order:
                x = x + phi_2 * (denoised - d_1) / (h_1 / h)
            elif h_1 is not None:  # dpmpp_2m_sde, midpoint
                x = x + 0.5 * (-h_eta).expm1().neg() * (h / h_1) * (denoised - d_1)
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h).expm1().neg().sqrt()
        d_1, d_2, h_1, h_2 = denoised, d_1, h, h_1
    return x


def ours(name, x, sigmas):
    from nodegraph.comfy.samplers import step

    generator, history = torch.Generator("cpu").manual_seed(SEED), None
    for i in range(len(sigmas) - 1):
        x, history = step(name, x, toy_model(x, sigmas[i]), sigmas, i, generator, history, toy_model)
    return x


@pytest.mark.parametrize("name, oracle", [
    ("dpmpp_sde", comfy_dpmpp_sde), ("dpmpp_sde_gpu", comfy_dpmpp_sde), ("dpmpp_3m_sde", comfy_dpmpp_3m_sde),
    ("dpmpp_3m_sde_gpu", comfy_dpmpp_3m_sde), ("dpmpp_2m_sde", lambda x, s: comfy_dpmpp_3m_sde(x, s, False))])
def test_sde_samplers_follow_comfyuis_loop_and_brownian_noise(name, oracle):
    from nodegraph.comfy.schedules import sigmas_for

    sigmas = sigmas_for("karras", 5)
    x = torch.randn((1, 4, 6, 6), generator=torch.Generator().manual_seed(0)) * float(sigmas[0])
    expected = oracle(x, sigmas)
    torch.testing.assert_close(ours(name, x, sigmas), expected, atol=2e-5, rtol=1e-5)
    # sensitive: with independent noise instead of the Brownian path the result moves
    assert (ours("euler_ancestral", x, sigmas) - expected).abs().max() > 0.05


def test_hiresfix_latent_template_runs_with_dpmpp_sde(tmp_path, models_dir, sd1_folder):
    name = "hiresfix_latent_workflow"
    models = models_folder(tmp_path, {f"checkpoints/{n}": models_dir / "checkpoints" / "tiny-sd1.safetensors"
                                      for n in checkpoints_of(name)})
    images = run_template(tmp_path, name, models, sd1_folder, *small_sizes(name))
    assert max(i.shape[0] for i in images) > 16 and min(i.std() for i in images) > 1  # upscaled, not blank


def test_latent_upscale_different_prompt_model_template_runs(tmp_path, models_dir, sd1_folder):
    name = "latent_upscale_different_prompt_model"  # dpmpp_sde, LatentUpscaleBy 1.5, two checkpoints
    models = models_folder(tmp_path, {f"checkpoints/{n}": models_dir / "checkpoints" / "tiny-sd1.safetensors"
                                      for n in checkpoints_of(name)})
    images = run_template(tmp_path, name, models, sd1_folder, *small_sizes(name))
    assert sorted(i.shape[0] for i in images) == [16, 24]  # 8×8 latent, then ×1.5
