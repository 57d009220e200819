"""ComfyUI's σ schedules and sampler steps against diffusers' schedulers configured as the facts note says.

Schedules: ComfyUI's "normal" = diffusers' linspace spacing; "karras"/"exponential" = diffusers' Karras /
exponential σ over the same end points; "simple" = trailing spacing; "ddim_uniform" = leading spacing with
steps_offset 1; "sgm_uniform" over n steps = the first n σ of linspace spacing over n + 1 (at step counts whose
timesteps are whole numbers). Samplers: the same toy ε-model driven through our steps and through diffusers'
scheduler loop must end at the same x (diffusers gets the exact σ-space start, ComfyUI's rule).
"""

from __future__ import annotations

import math

import pytest
import torch

from nodegraph.comfy.samplers import step
from nodegraph.comfy.schedules import ksampler_sigmas, sigma_table, sigmas_for, timestep_of

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def diffusers_sigmas(steps, **config):
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(**SD_BETAS, **config)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.float()


@pytest.mark.parametrize("steps", [4, 10, 25])
@pytest.mark.parametrize("name, config", [
    ("normal", {"timestep_spacing": "linspace"}),
    ("karras", {"timestep_spacing": "linspace", "use_karras_sigmas": True}),
    ("exponential", {"timestep_spacing": "linspace", "use_exponential_sigmas": True}),
    ("simple", {"timestep_spacing": "trailing"}),
    ("ddim_uniform", {"timestep_spacing": "leading", "steps_offset": 1}),
])
def test_schedule_matches_diffusers_configured_as_comfyui(name, config, steps):
    ours, theirs = sigmas_for(name, steps), diffusers_sigmas(steps, **config)
    assert ours.shape == theirs.shape == (steps + 1,)
    torch.testing.assert_close(ours, theirs, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [3, 9])
def test_sgm_uniform_is_linspace_over_one_more_step_without_its_last(steps):
    ours, theirs = sigmas_for("sgm_uniform", steps), diffusers_sigmas(steps + 1, timestep_spacing="linspace")
    torch.testing.assert_close(ours[:-1], theirs[:steps], rtol=2e-5, atol=1e-6)
    assert ours[-1] == 0


def test_schedules_differ_from_each_other():  # the parity above is not vacuous
    schedules = {name: sigmas_for(name, 10) for name in ("normal", "karras", "exponential", "simple", "ddim_uniform")}
    names = list(schedules)
    for a in names:
        for b in names[names.index(a) + 1:]:
            assert not torch.allclose(schedules[a], schedules[b], rtol=1e-3), (a, b)


def test_unet_gets_the_nearest_integer_timestep():
    table = sigma_table()
    assert [timestep_of(table, s) for s in sigmas_for("normal", 4)[:-1]] == [999, 666, 333, 0]
    # diffusers' own table at those t (the facts note: ComfyUI passes integers, diffusers' Euler fractions)
    torch.testing.assert_close(sigmas_for("normal", 4)[:-1], diffusers_sigmas(4, timestep_spacing="linspace")[:-1])


def test_denoise_keeps_the_tail_of_a_longer_schedule():
    # KSampler.set_steps: int(steps / denoise) steps, the last steps + 1 σ
    torch.testing.assert_close(ksampler_sigmas("normal", 4, denoise=0.5), diffusers_sigmas(8, timestep_spacing="linspace")[-5:])
    assert len(ksampler_sigmas("normal", 4, denoise=0.0)) == 0


def test_ksampler_advanced_cuts_and_forces_full_denoise():
    full = sigmas_for("normal", 10)
    first = ksampler_sigmas("normal", 10, start=0, end=6, force_full_denoise=False)
    torch.testing.assert_close(first, full[:7])
    forced = ksampler_sigmas("normal", 10, start=0, end=6, force_full_denoise=True)
    assert forced[-1] == 0 and torch.equal(forced[:-1], full[:6])
    torch.testing.assert_close(ksampler_sigmas("normal", 10, start=6), full[6:])


def toy_eps(x_in, t):
    """A smooth, nonlinear stand-in for a UNet's ε (independent of t, so fractional vs integer t cannot matter)."""
    return torch.tanh(0.7 * x_in) + 0.1 * x_in.roll(1, dims=-1)


def ours_final(sampler, sigmas, noise, seed):
    x = noise * math.sqrt(1 + float(sigmas[0]) ** 2)  # ComfyUI's first x (full denoise)
    generator, history = torch.Generator("cpu").manual_seed(seed), None

    def model(x, sigma):
        return x - sigma * toy_eps(x / math.sqrt(sigma ** 2 + 1), None)

    for i in range(len(sigmas) - 1):
        x, history = step(sampler, x, model(x, float(sigmas[i])), sigmas, i, generator, history, model)
    return x


def diffusers_final(scheduler, noise, seed):
    vp = type(scheduler).__name__.startswith("DPMSolver")  # DPM-Solver works on x / √(1 + σ²)
    sigma_max = float(scheduler.sigmas[0])
    x = noise if vp else noise * math.sqrt(1 + sigma_max ** 2)
    import inspect

    stochastic = "generator" in inspect.signature(scheduler.step).parameters
    extra = {"generator": torch.Generator("cpu").manual_seed(seed)} if stochastic else {}
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        x = scheduler.step(toy_eps(x_in, t), t, x, **extra).prev_sample
    return x


@pytest.mark.parametrize("sampler, schedule, cls, config", [
    ("euler", "normal", "EulerDiscreteScheduler", {"timestep_spacing": "linspace"}),
    ("euler", "karras", "EulerDiscreteScheduler", {"timestep_spacing": "linspace", "use_karras_sigmas": True}),
    ("euler_ancestral", "normal", "EulerAncestralDiscreteScheduler", {"timestep_spacing": "linspace"}),
    ("heun", "normal", "HeunDiscreteScheduler", {"timestep_spacing": "linspace"}),
    ("heun", "karras", "HeunDiscreteScheduler", {"timestep_spacing": "linspace", "use_karras_sigmas": True}),
    ("dpm_2", "normal", "KDPM2DiscreteScheduler", {"timestep_spacing": "linspace"}),
    ("dpm_2_ancestral", "normal", "KDPM2AncestralDiscreteScheduler", {"timestep_spacing": "linspace"}),
    ("lms", "normal", "LMSDiscreteScheduler", {"timestep_spacing": "linspace"}),
    ("lms", "karras", "LMSDiscreteScheduler", {"timestep_spacing": "linspace", "use_karras_sigmas": True}),
    ("dpmpp_2m", "karras", "DPMSolverMultistepScheduler",
     {"timestep_spacing": "linspace", "use_karras_sigmas": True, "final_sigmas_type": "zero"}),
    # (diffusers' DPM-Solver spaces plain timesteps over steps + 1 points, so "normal" has no DPM oracle there)
    ("dpmpp_2m", "exponential", "DPMSolverMultistepScheduler",
     {"timestep_spacing": "linspace", "use_exponential_sigmas": True, "final_sigmas_type": "zero"}),
])
def test_sampler_matches_diffusers(sampler, schedule, cls, config):
    import diffusers

    steps, seed = 12, 3
    scheduler = getattr(diffusers, cls)(**SD_BETAS, **config)
    scheduler.set_timesteps(steps)
    noise = torch.randn((1, 4, 6, 6), generator=torch.Generator("cpu").manual_seed(seed))
    ours = ours_final(sampler, sigmas_for(schedule, steps), noise, seed)
    theirs = diffusers_final(scheduler, noise, seed)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # sensitivity: plain Euler on the same schedule ends elsewhere (the samplers are really different)
    if sampler != "euler":
        assert (ours_final("euler", sigmas_for(schedule, steps), noise, seed) - theirs).abs().max() > 1e-3
