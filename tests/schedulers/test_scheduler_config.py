"""Names, config resolution, errors and run state of the schedulers; needs no diffusers."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from scheduler_harness import SHAPE, denoise, fake_model, load_json

from nodegraph.schedulers import SCHEDULER_CLASSES, SCHEDULER_NAMES, SchedulerConfigError, create_scheduler
from nodegraph.schedulers.lms import lms_coefficient

SD14 = load_json("sd14_scheduler_config.json")
SHORT = ["ddpm", "ddim", "pndm", "unipc", "euler", "euler_a", "dpmpp_2m", "lms", "lcm", "tcd"]


def test_the_eight_short_names_and_their_diffusers_class_names_pick_the_same_class():
    assert list(SCHEDULER_NAMES) == SHORT
    for short, cls in SCHEDULER_NAMES.items():
        assert SCHEDULER_CLASSES[cls.class_name] is cls
        assert type(create_scheduler(SD14, name=cls.class_name)) is type(create_scheduler(SD14, name=short)) is cls
        s = create_scheduler(SD14, name=short)
        assert (s.short_name, s.class_name, s.order) == (short, cls.class_name, 1)


def test_short_names_ignore_case_and_common_spellings_are_understood():
    assert create_scheduler(SD14, name="Euler_A").short_name == "euler_a"
    assert create_scheduler(SD14, name="DPM++2M").short_name == "dpmpp_2m"
    assert create_scheduler(SD14, name="k_lms").short_name == "lms"


def test_a_near_miss_of_an_alias_suggests_the_short_name():
    with pytest.raises(SchedulerConfigError, match=r"Did you mean 'dpmpp_2m'\?"):
        create_scheduler(SD14, name="dpm++")


def test_unknown_name_suggests_the_closest_and_lists_every_allowed_name():
    with pytest.raises(SchedulerConfigError) as e:
        create_scheduler(SD14, name="eulr_a")
    msg = str(e.value)
    assert "Did you mean 'euler_a'?" in msg
    assert all(n in msg for n in SHORT) and "DPMSolverMultistepScheduler" in msg


def test_config_of_a_class_nodegraph_lacks_needs_a_name():
    with pytest.raises(SchedulerConfigError, match="HeunDiscreteScheduler"):
        create_scheduler(dict(SD14, _class_name="HeunDiscreteScheduler"))
    assert create_scheduler(dict(SD14, _class_name="HeunDiscreteScheduler"), name="euler").short_name == "euler"


def test_config_without_class_name_needs_a_name():
    cfg = {k: v for k, v in SD14.items() if k != "_class_name"}
    with pytest.raises(SchedulerConfigError, match="no `_class_name`; pass `name=`"):
        create_scheduler(cfg)


def test_bad_value_names_the_key_the_value_and_the_allowed_values():
    with pytest.raises(SchedulerConfigError) as e:
        create_scheduler(dict(SD14, timestep_spacing="middle"), name="ddim")
    assert str(e.value).startswith("DDIMScheduler: `timestep_spacing` must be one of 'linspace', 'leading', "
                                   "'trailing'; got 'middle'.")
    assert "remove it to use the default 'leading'" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_every_bad_key_is_reported_at_once():
    with pytest.raises(SchedulerConfigError) as e:
        create_scheduler({"beta_schedule": "cosine", "steps_offset": "1", "clip_sample": "yes"}, name="ddpm")
    lines = str(e.value).splitlines()
    assert len(lines) == 3
    assert "`beta_schedule` must be one of 'linear', 'scaled_linear', 'squaredcos_cap_v2'" in lines[0]
    assert "`steps_offset` must be an integer; got '1'" in lines[1]
    assert "`clip_sample` must be true or false; got 'yes'" in lines[2]


@pytest.mark.parametrize("name,cfg,fragment", [
    ("euler_a", {"prediction_type": "sample"}, "one of 'epsilon', 'v_prediction'"),
    ("pndm", {"prediction_type": "sample"}, "one of 'epsilon', 'v_prediction'"),
    ("euler", {"use_beta_sigmas": True}, "scipy"),
    ("unipc", {"use_flow_sigmas": True}, "flow-matching"),
    ("dpmpp_2m", {"algorithm_type": "dpmsolver"}, "one of 'dpmsolver++', 'sde-dpmsolver++'"),
    ("dpmpp_2m", {"solver_order": 4}, "one of 1, 2, 3"),
    ("ddpm", {"variance_type": "fixed_large_log"}, "NaN"),
    ("euler", {"use_karras_sigmas": True, "use_exponential_sigmas": True}, "only one of"),
    ("ddim", {"trained_betas": [0.1, 0.2]}, "one beta per training step"),
    ("ddim", {"num_train_timesteps": 0}, "at least 1"),
    ("unipc", {"predict_x0": False}, "set `final_sigmas_type` to 'sigma_min'"),
    ("unipc", {"lower_order_final": False}, "set `lower_order_final` to true"),
])
def test_values_nodegraph_cannot_use_are_clear_errors(name, cfg, fragment):
    with pytest.raises(SchedulerConfigError) as e:
        create_scheduler(cfg, name=name)
    assert fragment in str(e.value)


def test_keys_the_class_does_not_know_are_ignored_but_kept_as_explicit():
    s = create_scheduler(dict(SD14, foo=3, clip_sample=False), name="euler")
    assert "foo" not in s.config and s.explicit_config["foo"] == 3
    assert "clip_sample" not in s.config


def test_config_holds_every_key_with_defaults_and_explicit_only_the_json_keys():
    s = create_scheduler(SD14, name="unipc")
    assert s.config.timestep_spacing == "linspace" and s.config["solver_order"] == 2
    assert s.config.steps_offset == 1
    assert set(s.explicit_config) == {k for k in SD14 if not k.startswith("_")}


def test_keys_listed_in_use_default_values_are_dropped():
    cfg = dict(SD14, timestep_spacing="leading", _use_default_values=["timestep_spacing", "steps_offset"])
    s = create_scheduler(cfg, name="euler")
    assert s.config.timestep_spacing == "linspace" and s.config.steps_offset == 0
    assert "timestep_spacing" not in s.explicit_config


def test_overrides_act_like_json_keys():
    s = create_scheduler({"_class_name": "DDIMScheduler"}, overrides={"steps_offset": 1, "clip_sample": False})
    s.set_timesteps(10)
    assert s.timesteps[-1].item() == 1 and s.config.clip_sample is False
    assert s.explicit_config["steps_offset"] == 1


@pytest.mark.parametrize("name,cfg,key,expected", [
    ("unipc", {"solver_type": "midpoint"}, "solver_type", "bh2"),
    ("dpmpp_2m", {"solver_type": "bh2"}, "solver_type", "midpoint"),
    ("dpmpp_2m", {"algorithm_type": "deis"}, "algorithm_type", "dpmsolver++"),
    ("dpmpp_2m", {"variance_type": "fixed_small"}, "variance_type", None),
    ("ddpm", {"variance_type": None}, "variance_type", "fixed_small"),
    ("euler", {"prediction_type": "original_sample"}, "prediction_type", "sample"),
])
def test_values_of_other_classes_are_read_as_diffusers_rewrites_them(name, cfg, key, expected):
    assert create_scheduler(cfg, name=name).config[key] == expected


def test_config_is_read_only():
    s = create_scheduler(SD14)
    with pytest.raises(TypeError):
        s.config["steps_offset"] = 0
    with pytest.raises(AttributeError):
        s.config.steps_offset = 0


@pytest.mark.parametrize("n", [0, 1001, 2.5, True, "10"])
def test_set_timesteps_rejects_counts_outside_one_to_num_train_timesteps(n):
    with pytest.raises(SchedulerConfigError, match="`num_inference_steps` must be an integer from 1 to"):
        create_scheduler(SD14, name="euler").set_timesteps(n)


@pytest.mark.parametrize("name", ["ddim", "pndm", "unipc", "euler", "dpmpp_2m", "lms", "euler_a"])
def test_step_before_set_timesteps_is_a_clear_error(name):
    s = create_scheduler(SD14, name=name)
    x = torch.zeros(SHAPE)
    with pytest.raises(RuntimeError, match=r"call set_timesteps\(n\)"):
        s.step(x, 999, x)


def test_stepping_past_the_last_timestep_is_a_clear_error():
    s = create_scheduler(SD14, name="dpmpp_2m")
    denoise(s, 5)
    x = torch.zeros(SHAPE)
    with pytest.raises(RuntimeError, match="the schedule has 5 timesteps"):
        s.step(x, s.timesteps[-1], x)


def test_timestep_for_a_sigma_scheduler_must_be_one_of_its_timesteps():
    s = create_scheduler(SD14, name="euler")
    s.set_timesteps(10)
    with pytest.raises(ValueError, match="not one of this scheduler's timesteps"):
        s.scale_model_input(torch.zeros(SHAPE), 500.5)


@pytest.mark.parametrize("name,dtype", [("ddpm", torch.int64), ("ddim", torch.int64), ("pndm", torch.int64),
                                        ("unipc", torch.int64), ("dpmpp_2m", torch.int64),
                                        ("euler", torch.float32), ("euler_a", torch.float32), ("lms", torch.float32)])
def test_timestep_dtypes_follow_diffusers(name, dtype):
    s = create_scheduler(SD14, name=name)
    s.set_timesteps(7)
    assert s.timesteps.dtype == dtype and s.timesteps.ndim == 1


@pytest.mark.parametrize("name", SHORT)
def test_set_timesteps_resets_all_run_state(name):
    s = create_scheduler(SD14, name=name)
    first = denoise(s, 12, seed=4)
    s.set_begin_index(3)
    again = denoise(s, 12, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("name", SHORT)
def test_two_runs_never_share_scheduler_state(name):
    alone = [denoise(create_scheduler(SD14, name=name), 10, seed=s)[-1] for s in (1, 2)]
    scheds = [create_scheduler(SD14, name=name) for _ in range(2)]
    gens = [torch.Generator("cpu").manual_seed(s) for s in (1, 2)]
    xs = [torch.randn(SHAPE, generator=g) for g in gens]
    for s, i in zip(scheds, range(2)):
        s.set_timesteps(10)
        xs[i] = xs[i] * s.init_noise_sigma
    for k in range(len(scheds[0].timesteps)):  # interleave the two runs step by step
        for i, s in enumerate(scheds):
            t = s.timesteps[k]
            xs[i] = s.step(fake_model(s.scale_model_input(xs[i], t), t), t, xs[i], generator=gens[i])
    assert torch.equal(xs[0], alone[0]) and torch.equal(xs[1], alone[1])


@pytest.mark.parametrize("name", ["pndm", "unipc", "lms"])
def test_a_copied_scheduler_carries_on_independently(name):
    s = create_scheduler(SD14, name=name)
    full = denoise(s, 10, seed=6)
    s = create_scheduler(SD14, name=name)
    s.set_timesteps(10)
    x = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(6)) * s.init_noise_sigma
    for t in s.timesteps[:4]:
        x = s.step(fake_model(s.scale_model_input(x, t), t), t, x)
    for twin in (copy.deepcopy(s), pickle.loads(pickle.dumps(s)), s):
        y = x
        for t in s.timesteps[4:]:
            y = twin.step(fake_model(twin.scale_model_input(y, t), t), t, y)
        assert torch.equal(y, full[-1])


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_lms_coefficients_integrate_the_lagrange_basis_exactly(order):
    sigmas = np.array([14.6, 9.1, 5.3, 2.9, 1.4, 0.0])
    i = order  # sigmas[i - order + 1 .. i] are the interpolation points; integrate to sigmas[i + 1]
    for j in range(order):
        nodes = [sigmas[i - k] for k in range(order)]
        basis = np.poly1d([1.0])
        for k, node in enumerate(nodes):
            if k != j:
                basis *= np.poly1d([1.0, -node]) / (nodes[j] - node)
        antiderivative = basis.integ()
        exact = antiderivative(sigmas[i + 1]) - antiderivative(sigmas[i])
        assert lms_coefficient(sigmas, order, i, j) == pytest.approx(exact, rel=1e-12, abs=1e-12)


def test_schedulers_import_neither_scipy_nor_diffusers():
    code = ("import sys, nodegraph.schedulers as s; s.create_scheduler({}, name='lms').set_timesteps(5); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'diffusers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_learned_variance_needs_a_model_with_twice_the_channels():
    s = create_scheduler({"variance_type": "learned_range"}, name="ddpm")
    s.set_timesteps(5)
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="outputs 2x4 channels"):
        s.step(x, s.timesteps[0], x)


@pytest.mark.parametrize("name", SHORT)
def test_timesteps_may_be_passed_as_python_numbers(name):
    as_tensors = denoise(create_scheduler(SD14, name=name), 8, seed=2)
    s = create_scheduler(SD14, name=name)
    s.set_timesteps(8, device="cpu")
    g = torch.Generator("cpu").manual_seed(2)
    x = torch.randn(SHAPE, generator=g) * s.init_noise_sigma
    for t in s.timesteps.tolist():
        x = s.step(fake_model(s.scale_model_input(x, t), t), t, x, generator=g)
    assert torch.equal(x, as_tensors[-1])
