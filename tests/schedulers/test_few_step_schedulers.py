"""LCM and TCD give diffusers' numbers: the same skipping-step schedule, the same trajectories, the same noise
between steps; and they refuse what diffusers refuses with a message that says what to do.

(The general parity tests of test_scheduler_parity.py also run every registered name, these two included,
through every spacing, prediction type, beta schedule, img2img start and class swap.)
"""

from __future__ import annotations

import pytest
import torch
from scheduler_harness import assert_same_schedule, assert_trajectories_close, denoise

from nodegraph.schedulers import SchedulerConfigError, create_scheduler, scheduler_class

import diffusers  # a test dependency: a broken install must fail, not skip
diffusers.utils.logging.set_verbosity_error()

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False)


def pair(name: str, cfg: dict):
    ours = create_scheduler(cfg, name=name)
    return ours, getattr(diffusers, ours.class_name).from_config(cfg)


def test_short_and_diffusers_names_pick_the_few_step_classes():
    assert scheduler_class("lcm").class_name == "LCMScheduler" and scheduler_class("LCMScheduler").short_name == "lcm"
    assert scheduler_class("TCD").class_name == "TCDScheduler" and scheduler_class("TCDScheduler").short_name == "tcd"


@pytest.mark.parametrize("original,steps", [(o, n) for o in (50, 25, 7, 1000) for n in (1, 2, 4, 6, 8) if n <= o])
@pytest.mark.parametrize("name", ["lcm", "tcd"])
def test_skipping_step_schedule_matches_diffusers(name, steps, original):
    ours, theirs = pair(name, dict(SD, original_inference_steps=original))
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    assert_same_schedule(ours, theirs)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_lcm_trajectory_and_noise_between_steps_match_diffusers(steps, spacing):
    ours, theirs = pair("lcm", dict(SD, timestep_spacing=spacing))
    assert_trajectories_close(denoise(ours, steps, seed=3), denoise(theirs, steps, seed=3))


@pytest.mark.parametrize("extra", [
    {"original_inference_steps": 20}, {"timestep_scaling": 4.0}, {"prediction_type": "v_prediction"},
    {"set_alpha_to_one": False}, {"clip_sample": True, "clip_sample_range": 0.7},
    {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5},
    {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction"},
], ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_lcm_options_match_diffusers(extra):
    ours, theirs = pair("lcm", dict(SD, **extra))
    assert_trajectories_close(denoise(ours, 4, seed=1), denoise(theirs, 4, seed=1))


def test_lcm_noise_comes_from_the_run_generator():
    a = denoise(create_scheduler(SD, name="lcm"), 4, seed=0)
    b = denoise(create_scheduler(SD, name="lcm"), 4, seed=0)
    c = denoise(create_scheduler(SD, name="lcm"), 4, seed=1)
    assert torch.equal(a[-1], b[-1]) and not torch.allclose(a[-1], c[-1])


def test_lcm_single_step_is_the_consistency_estimate_without_noise():
    ours, theirs = pair("lcm", SD)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    eps = torch.randn(1, 4, 8, 8, generator=g)
    ours.set_timesteps(1)
    theirs.set_timesteps(1)
    t = ours.timesteps[0]
    state = g.get_state()
    out = ours.step(eps, t, x, generator=g)
    assert torch.equal(g.get_state(), state), "the last step must not draw noise"
    torch.testing.assert_close(out, theirs.step(eps, t, x, generator=g).prev_sample, rtol=0, atol=0)


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("steps", [1, 4, 8])
def test_tcd_gamma_matches_diffusers(steps, eta):
    ours, theirs = pair("tcd", SD)
    a, b = denoise(ours, steps, seed=2, eta=eta), denoise(theirs, steps, seed=2, eta=eta)
    assert_trajectories_close(a, b)


def test_tcd_gamma_changes_the_image():
    a = denoise(create_scheduler(SD, name="tcd"), 4, seed=2, eta=0.0)
    b = denoise(create_scheduler(SD, name="tcd"), 4, seed=2, eta=0.3)
    assert not torch.allclose(a[-1], b[-1])


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_tcd_predictions_match_diffusers(prediction):
    ours, theirs = pair("tcd", dict(SD, prediction_type=prediction, original_inference_steps=30))
    assert_trajectories_close(denoise(ours, 6, eta=0.5), denoise(theirs, 6, eta=0.5))


@pytest.mark.parametrize("name", ["lcm", "tcd"])
def test_more_steps_than_the_distillation_schedule_says_what_to_do(name):
    s = create_scheduler(dict(SD, original_inference_steps=8), name=name)
    with pytest.raises(SchedulerConfigError, match=r"`steps` 9 is more than `original_inference_steps` 8.*at most 8"):
        s.set_timesteps(9)
    with pytest.raises(ValueError):  # diffusers refuses it too
        getattr(diffusers, s.class_name).from_config(dict(SD, original_inference_steps=8)).set_timesteps(9)


def test_tcd_refuses_gamma_out_of_range():
    s = create_scheduler(SD, name="tcd")
    s.set_timesteps(4)
    with pytest.raises(SchedulerConfigError, match=r"`eta` \(gamma\) must be from 0 to 1; got 1.5"):
        s.step(torch.zeros(1, 4, 8, 8), s.timesteps[0], torch.zeros(1, 4, 8, 8), eta=1.5)
