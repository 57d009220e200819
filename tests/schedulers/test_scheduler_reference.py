"""The real SD1.4 and ddpm-cat-256 scheduler configs give the timesteps diffusers 0.42.1 gives (recorded in
data/timesteps-diffusers-0.42.1.json); needs no diffusers.

Timesteps are compared exactly. Sigmas are compared to within one float32 ulp: they were recorded on an AMD EPYC,
and torch's vectorised exp/pow round the last bit differently on other CPUs (on an Intel Xeon with avx512_fp16,
diffusers itself gives 0.029167532920837402 where the file says 0.02916753478348255). The exact comparison with
diffusers on the machine at hand is tests/schedulers/test_scheduler_parity.py's."""

from __future__ import annotations

import pytest
import torch
from scheduler_harness import load_json

from nodegraph.schedulers import create_scheduler

REF = load_json("timesteps-diffusers-0.42.1.json")
SD14 = load_json("sd14_scheduler_config.json")
CAT = load_json("ddpm_cat256_scheduler_config.json")

# short name -> key prefix in the reference file
SWAPS = {"ddim": "sd14_ddim", "unipc": "sd14_unipc_from_config", "euler": "sd14_euler",
         "euler_a": "sd14_euler_ancestral", "dpmpp_2m": "sd14_dpmsolver_multistep", "lms": "sd14_lms"}


def f32(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def assert_within_one_ulp(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """|actual - expected| < eps·|expected| admits a difference of one unit in the last place, never two."""
    gap, bound = (actual - expected).abs(), torch.finfo(torch.float32).eps * expected.abs()
    assert bool((gap <= bound).all()), f"more than one ulp apart: {actual.tolist()} vs {expected.tolist()}"


def test_sd14_pndm_repeats_the_second_timestep():
    s = create_scheduler(SD14)
    s.set_timesteps(25)
    assert s.class_name == "PNDMScheduler"
    assert s.timesteps.tolist() == REF["sd14_pndm_25"]


def test_sd14_config_resolves_like_diffusers_from_pretrained():
    s = create_scheduler(SD14)
    after_load = REF["sd14_pndm_config_after_load"]
    for key, value in s.config.items():
        assert after_load[key] == value, key
    assert set(s.config) == {k for k in after_load if not k.startswith("_") and k != "clip_sample"}
    assert "clip_sample" in s.explicit_config and "clip_sample" not in s.config  # a json key PNDM does not know


@pytest.mark.parametrize("name", list(SWAPS))
def test_sd14_swapped_schedulers_give_diffusers_timesteps(name):
    key = SWAPS[name]
    s = create_scheduler(SD14, name=name)
    s.set_timesteps(25)
    assert s.timesteps.tolist() == REF[f"{key}_25"]
    assert s.config.timestep_spacing == REF[f"{key}_spacing"]


@pytest.mark.parametrize("name", ["euler", "euler_a", "lms", "dpmpp_2m"])
def test_sd14_swapped_schedulers_give_diffusers_sigmas(name):
    key = SWAPS[name]
    s = create_scheduler(SD14, name=name)
    s.set_timesteps(25)
    first, second_to_last, last = REF[f"{key}_sigmas_first_last"]
    assert_within_one_ulp(s.sigmas[[0, -2, -1]], f32([first, second_to_last, last]))
    assert float(s.init_noise_sigma) == f32(REF[f"{key}_init_noise_sigma"]).item()


def test_sd14_unipc_sigmas_match_to_the_last_bit_but_one():
    s = create_scheduler(SD14, name="unipc")
    s.set_timesteps(25)
    assert_within_one_ulp(s.sigmas, f32(REF["sd14_unipc_from_config_sigmas"]))


def test_sd14_unipc_from_a_resaved_config_uses_leading_spacing():
    # A config diffusers re-saves spells out timestep_spacing="leading" (PNDM's default), so it carries over.
    s = create_scheduler(dict(SD14, timestep_spacing="leading"), name="unipc")
    s.set_timesteps(25)
    assert s.timesteps.tolist() == REF["sd14_unipc_leading_25"]


def test_sd14_drops_keys_diffusers_marks_as_defaults():
    s = create_scheduler(REF["sd14_pndm_config_after_load"], name="unipc")
    s.set_timesteps(25)
    assert s.config.timestep_spacing == "linspace"
    assert s.timesteps.tolist() == REF["sd14_unipc_from_config_25"]


def test_ddim_from_sd14_starts_from_unit_noise():
    s = create_scheduler(SD14, name="ddim")
    assert s.init_noise_sigma == REF["sd14_ddim_init_noise_sigma"]


def test_ddpm_cat256_timesteps():
    s = create_scheduler(CAT)
    s.set_timesteps(50)
    assert s.timesteps.tolist() == REF["ddpm_cat256_50"]
    assert s.config.clip_sample is True and s.config.variance_type == "fixed_small"


def test_beta_and_alpha_tables_match_diffusers():
    cat, sd = create_scheduler(CAT), create_scheduler(SD14)
    assert cat.betas[[0, 999]].tolist() == f32(REF["ddpm_cat256_betas[0,999]"]).tolist()
    assert sd.betas[[0, 999]].tolist() == f32(REF["sd14_betas[0,999]"]).tolist()
    assert cat.alphas_cumprod[[0, 499, 999]].tolist() == f32(REF["ddpm_cat256_alphas_cumprod[0,499,999]"]).tolist()
    assert sd.alphas_cumprod[[0, 499, 999]].tolist() == f32(REF["sd14_alphas_cumprod[0,499,999]"]).tolist()
