"""`flow_euler` against diffusers' FlowMatchEulerDiscreteScheduler, run side by side in the same test: sigmas,
timesteps and every sample of a seeded loop with a fixed fake velocity model must be bit-equal."""

from __future__ import annotations

import math

import pytest
import torch

from nodegraph.schedulers import SchedulerConfigError, create_scheduler
from nodegraph.schedulers.flow_match_euler import FlowMatchEulerDiscreteScheduler, calculate_shift

CONFIGS = {  # name -> (scheduler_config.json, what the pipeline passes: "z" sigmas linspace(1, 1/n, n), "none")
    "z-image-turbo": ({"shift": 3.0}, "z"),
    "flux-dev": ({"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                  "base_image_seq_len": 256, "max_image_seq_len": 4096}, "z"),
    "flux-schnell": ({"shift": 1.0}, "z"),
    "sd3": ({"shift": 3.0}, "none"),
    "dynamic-linear": ({"use_dynamic_shifting": True, "time_shift_type": "linear", "max_shift": 2.0}, "none"),
    "terminal-karras": ({"shift": 2.0, "shift_terminal": 0.05, "use_karras_sigmas": True}, "z"),
    "exponential": ({"shift": 1.5, "use_exponential_sigmas": True}, "none"),
    "inverted": ({"shift": 3.0, "invert_sigmas": True}, "none"),
}


def _args(kind: str, n: int, scheduler) -> dict:
    kw = {"sigmas": torch.linspace(1.0, 1 / n, n).tolist()} if kind == "z" else {}
    if scheduler.config.use_dynamic_shifting:
        kw["mu"] = calculate_shift(37 * 3, scheduler.config.base_image_seq_len, scheduler.config.max_image_seq_len,
                                   scheduler.config.base_shift, scheduler.config.max_shift)
    return kw


def _loop(scheduler, n: int, kind: str, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn(2, 16, 6, 4, generator=g)
    scheduler.set_timesteps(n, **_args(kind, n, scheduler))
    scheduler.set_begin_index(0)
    out = []
    for t in scheduler.timesteps:
        v = torch.tanh(x) * (0.7 + 0.2 * math.cos(float(t) / 200)) - 0.1  # a smooth stand-in velocity
        x = scheduler.step(v, t, x, generator=g)
        x = x if isinstance(x, torch.Tensor) else x.prev_sample  # diffusers returns its output dataclass
        out.append(x)
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("steps", [2, 5, 9])
def test_sigmas_timesteps_and_every_sample_equal_diffusers(name, steps):
    from diffusers import FlowMatchEulerDiscreteScheduler as Theirs

    cfg, kind = CONFIGS[name]
    theirs, ours = Theirs(**cfg), create_scheduler({"_class_name": "FlowMatchEulerDiscreteScheduler", **cfg})
    assert isinstance(ours, FlowMatchEulerDiscreteScheduler)
    expected, got = _loop(theirs, steps, kind), _loop(ours, steps, kind)
    assert torch.equal(ours.sigmas, theirs.sigmas) and torch.equal(ours.timesteps, theirs.timesteps)
    assert ours.timesteps.dtype == torch.float32
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_stochastic_sampling_draws_from_the_generator_like_diffusers():
    from diffusers import FlowMatchEulerDiscreteScheduler as Theirs

    cfg = {"shift": 3.0, "stochastic_sampling": True}
    expected = _loop(Theirs(**cfg), 3, "z", seed=5)
    got = _loop(create_scheduler(cfg, "flow_euler"), 3, "z", seed=5)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_bf16_model_output_is_stepped_in_float32_and_returned_in_bf16():
    from diffusers import FlowMatchEulerDiscreteScheduler as Theirs

    results = []
    for s in (Theirs(shift=3.0), create_scheduler({"shift": 3.0}, "flow_euler")):
        s.set_timesteps(2, sigmas=[1.0, 0.5])
        x = torch.linspace(-1, 1, 64).reshape(1, 16, 2, 2)
        out = s.step(torch.tanh(x * 3).bfloat16(), s.timesteps[0], x)
        results.append(out if isinstance(out, torch.Tensor) else out.prev_sample)
    assert results[0].dtype == results[1].dtype == torch.bfloat16 and torch.equal(*results)


def test_the_z_image_schedule_of_the_facts_note():
    s = create_scheduler({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0})
    s.set_timesteps(4, sigmas=torch.linspace(1.0, 0.25, 4).tolist())
    assert torch.allclose(s.sigmas, torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]))
    assert torch.allclose(s.timesteps, torch.tensor([1000.0, 900.0, 750.0, 500.0]))
    assert s.mu(4096) == pytest.approx(1.15)


def test_dynamic_shifting_without_mu_and_a_wrong_sigma_count_are_refused():
    s = create_scheduler({"use_dynamic_shifting": True}, "flow_euler")
    with pytest.raises(SchedulerConfigError, match="`mu`"):
        s.set_timesteps(4)
    with pytest.raises(SchedulerConfigError, match="3 `sigmas` given for 4 steps"):
        create_scheduler({}, "FlowMatchEulerDiscreteScheduler").set_timesteps(4, sigmas=[1.0, 0.6, 0.3])
    with pytest.raises(SchedulerConfigError, match="`time_shift_type`"):
        create_scheduler({"time_shift_type": "cosine"}, "flow_euler")
