"""nodegraph's schedulers give diffusers' numbers: same timesteps and sigmas, same trajectories within 1e-5."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from scheduler_harness import (
    SHAPE, assert_same_schedule, assert_trajectories_close, denoise, fake_model, img2img, load_json,
)

from nodegraph.schedulers import SCHEDULER_NAMES, create_scheduler

import diffusers  # a test dependency: a broken install must fail, not skip
diffusers.utils.logging.set_verbosity_error()  # from_config's notes about keys a class ignores
# diffusers 0.42.1 calls np.array(tensor) in set_timesteps, which numpy 2 flags; nodegraph does not.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False)
SPACINGS = ("linspace", "leading", "trailing")
PREDICTIONS = {name: ("epsilon", "v_prediction", "sample") for name in SCHEDULER_NAMES}
PREDICTIONS["pndm"] = ("epsilon", "v_prediction")  # diffusers' PNDM has no x0 prediction
PREDICTIONS["euler_a"] = ("epsilon", "v_prediction")  # ... nor its Euler ancestral
STOCHASTIC = ("ddpm", "euler_a")


def pair(name: str, cfg: dict):
    """(nodegraph, diffusers) schedulers of the same class built from the same json dict."""
    ours = create_scheduler(cfg, name=name)
    theirs = getattr(diffusers, ours.class_name).from_config(cfg)
    return ours, theirs


def check(name: str, cfg: dict, steps: int, seed: int = 0, eta: float = 0.0, **loop) -> list[torch.Tensor]:
    ours, theirs = pair(name, cfg)
    a = denoise(ours, steps, seed, eta=eta, **loop)
    b = denoise(theirs, steps, seed, eta=eta, **loop)
    assert_same_schedule(ours, theirs)
    assert_trajectories_close(a, b)
    return a


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("name,spacing,prediction", [
    pytest.param(n, s, p, id=f"{n}-{s}-{p}") for n in SCHEDULER_NAMES for s in SPACINGS for p in PREDICTIONS[n]])
def test_trajectory_matches_diffusers_for_every_spacing_and_prediction(name, spacing, prediction, steps):
    check(name, dict(SD, timestep_spacing=spacing, prediction_type=prediction), steps)


@pytest.mark.parametrize("betas", ["linear", "squaredcos_cap_v2", "trained"])
@pytest.mark.parametrize("name", list(SCHEDULER_NAMES))
def test_trajectory_matches_diffusers_for_every_beta_schedule(name, betas):
    cfg = {"beta_schedule": betas, "num_train_timesteps": 1000}
    if betas == "trained":
        cfg = {"trained_betas": torch.linspace(1e-4, 0.03, 1000).tolist()}
    check(name, dict(cfg, timestep_spacing="leading"), 13)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_steps_draw_diffusers_noise_from_the_run_generator(name, seed):
    a = check(name, dict(SD, timestep_spacing="trailing"), 15, seed=seed)
    other = denoise(create_scheduler(dict(SD), name=name), 15, seed=seed + 1)
    assert not torch.allclose(a[-1], other[-1])


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_small_log", "fixed_large", "learned",
                                           "learned_range"])
def test_ddpm_variance_types_match_diffusers(variance_type):
    out_channels = 8 if variance_type.startswith("learned") else None
    check("ddpm", dict(SD, variance_type=variance_type, clip_sample=True), 12, out_channels=out_channels)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_ddim_eta_matches_diffusers(eta, spacing):
    check("ddim", dict(SD, timestep_spacing=spacing, set_alpha_to_one=spacing == "trailing"), 20, seed=3, eta=eta)


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
@pytest.mark.parametrize("mode", ["clip", "clip_range", "threshold"])
def test_clipping_and_dynamic_thresholding_match_diffusers(name, mode):
    cfg = dict(SD, clip_sample=True)
    if mode == "clip_range":
        cfg["clip_sample_range"] = 0.5
    if mode == "threshold":
        cfg.update(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5)
    check(name, cfg, 15)


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
def test_multistep_thresholding_matches_diffusers(name):
    check(name, dict(SD, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5), 15)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_pndm_with_runge_kutta_warmup_matches_diffusers(spacing):
    check("pndm", dict(SD, skip_prk_steps=False, timestep_spacing=spacing), 20)


@pytest.mark.parametrize("kind", ["use_karras_sigmas", "use_exponential_sigmas"])
@pytest.mark.parametrize("name", ["euler", "lms", "dpmpp_2m", "unipc"])
def test_karras_and_exponential_sigmas_match_diffusers(name, kind):
    check(name, dict(SD, **{kind: True}), 20)


@pytest.mark.parametrize("name", ["euler", "unipc"])
def test_configured_sigma_range_matches_diffusers(name):
    check(name, dict(SD, use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0), 15)


def test_dpm_reads_sigma_min_from_json_keys_it_does_not_declare_like_diffusers():
    # diffusers looks the bounds up with hasattr(config), which also sees unknown json keys.
    check("dpmpp_2m", dict(SD, use_karras_sigmas=True, sigma_min=0.2), 15)


@pytest.mark.parametrize("steps", [8, 20])
@pytest.mark.parametrize("order,solver_type,algorithm", [
    (o, s, a) for o, s, a in itertools.product((1, 2, 3), ("midpoint", "heun"), ("dpmsolver++", "sde-dpmsolver++"))])
def test_dpm_solver_orders_and_variants_match_diffusers(order, solver_type, algorithm, steps):
    cfg = dict(SD, solver_order=order, solver_type=solver_type, algorithm_type=algorithm)
    check("dpmpp_2m", cfg, steps, seed=5)


@pytest.mark.parametrize("extra", [
    {"lower_order_final": False}, {"euler_at_final": True}, {"final_sigmas_type": "sigma_min"},
    {"use_lu_lambdas": True}, {"use_karras_sigmas": True, "beta_schedule": "linear"},
    {"lambda_min_clipped": -5.1}, {"lambda_min_clipped": -5.1, "timestep_spacing": "trailing"},
    {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"},
], ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_dpm_solver_options_match_diffusers(extra):
    check("dpmpp_2m", dict(SD, **extra), 12)


@pytest.mark.parametrize("kind", ["use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas"])
def test_dpm_solver_keeps_unrounded_cosine_timesteps_like_diffusers(kind):
    # Both libraries truncate these to repeated timesteps; diffusers then starts at the second match and
    # runs off the end of the schedule, so only the schedule itself is compared.
    ours, theirs = pair("dpmpp_2m", dict(SD, beta_schedule="squaredcos_cap_v2", **{kind: True}))
    ours.set_timesteps(12)
    theirs.set_timesteps(12)
    assert_same_schedule(ours, theirs)


def test_dpm_solver_learned_variance_model_uses_the_mean_channels_like_diffusers():
    check("dpmpp_2m", dict(SD, variance_type="learned_range"), 10, shape=(1, 3, 8, 8), out_channels=6)


@pytest.mark.parametrize("steps", [6, 20])
@pytest.mark.parametrize("order,solver_type", [(o, s) for o in (1, 2, 3) for s in ("bh1", "bh2")])
def test_unipc_orders_and_b_h_variants_match_diffusers(order, solver_type, steps):
    cfg = dict(SD, solver_order=order, solver_type=solver_type)
    if solver_type == "bh2":
        check("unipc", cfg, steps)
        return
    # bh1 into a final sigma of 0: diffusers computes -inf * 0 = NaN in a zero term; nodegraph leaves it out.
    ours, theirs = pair("unipc", cfg)
    a, b = denoise(ours, steps), denoise(theirs, steps)
    assert torch.isnan(b[-1]).all() and torch.isfinite(a[-1]).all()
    assert_trajectories_close(a[:-1], b[:-1])
    # At sigma 0 the step lands on the data prediction x0 = (x - sigma * eps) / alpha of the last model call.
    sigma = ours.sigmas[-2]
    x, t = a[-2], ours.timesteps[-1]
    eps = fake_model(x, t)
    alpha = 1 / (sigma**2 + 1) ** 0.5
    torch.testing.assert_close(a[-1], (x - sigma * alpha * eps) / alpha)


@pytest.mark.parametrize("extra", [
    {"predict_x0": False, "final_sigmas_type": "sigma_min"},
    {"predict_x0": False, "final_sigmas_type": "sigma_min", "prediction_type": "v_prediction"},
    {"disable_corrector": [0, 2]},
    {"lower_order_final": False, "solver_order": 2, "final_sigmas_type": "sigma_min"},
    {"lower_order_final": False, "solver_order": 3, "final_sigmas_type": "sigma_min"},
    {"final_sigmas_type": "sigma_min"}, {"use_karras_sigmas": True, "final_sigmas_type": "sigma_min"},
    {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"},
], ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_unipc_options_match_diffusers(extra):
    check("unipc", dict(SD, **extra), 12)


@pytest.mark.parametrize("extra", [
    {"interpolation_type": "log_linear"}, {"final_sigmas_type": "sigma_min"},
    {"timestep_type": "continuous", "prediction_type": "v_prediction"},
    {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"},
], ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_euler_options_match_diffusers(extra):
    check("euler", dict(SD, **extra), 12)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler_a"])
def test_zero_terminal_snr_rescaling_matches_diffusers(name):
    check(name, dict(SD, rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"), 12)


@pytest.mark.parametrize("name", ["euler", "euler_a", "dpmpp_2m", "ddim", "unipc"])
def test_half_precision_steps_follow_diffusers_casts(name):
    check(name, dict(SD), 10, dtype=torch.float16)


@pytest.mark.parametrize("strength", [0.3, 0.75])
@pytest.mark.parametrize("name", list(SCHEDULER_NAMES))
def test_img2img_start_with_set_begin_index_matches_diffusers(name, strength):
    ours, theirs = pair(name, dict(SD, timestep_spacing="leading"))
    assert_trajectories_close(img2img(ours, 20, strength), img2img(theirs, 20, strength))


@pytest.mark.parametrize("name", list(SCHEDULER_NAMES))
def test_add_noise_matches_diffusers(name):
    ours, theirs = pair(name, dict(SD))
    g = torch.Generator("cpu").manual_seed(1)
    x0, noise = torch.randn((3,) + SHAPE[1:], generator=g), torch.randn((3,) + SHAPE[1:], generator=g)
    for s in (ours, theirs):
        s.set_timesteps(20)
    t = theirs.timesteps[[0, 7, 19]]
    torch.testing.assert_close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "pndm"])
def test_training_add_noise_at_random_timesteps_matches_diffusers(name):
    ours, theirs = pair(name, dict(SD))
    g = torch.Generator("cpu").manual_seed(2)
    x0, noise = torch.randn((4,) + SHAPE[1:], generator=g), torch.randn((4,) + SHAPE[1:], generator=g)
    t = torch.randint(0, 1000, (4,), generator=g)
    torch.testing.assert_close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), rtol=0, atol=0)


# ----------------------------------------------------------------------------- swapping classes


def _saved(tmp_path, cls_name: str, **kwargs) -> dict:
    """A scheduler_config.json as diffusers writes it (every key, no `_use_default_values`)."""
    getattr(diffusers, cls_name)(**kwargs).save_config(tmp_path / cls_name)
    return json.loads((tmp_path / cls_name / "scheduler_config.json").read_text())


SOURCES = {
    "sd14": lambda tmp: load_json("sd14_scheduler_config.json"),
    "ddpm_cat256": lambda tmp: load_json("ddpm_cat256_scheduler_config.json"),
    "resaved_pndm": lambda tmp: _saved(tmp, "PNDMScheduler", **{k: v for k, v in SD.items() if k != "clip_sample"},
                                       skip_prk_steps=True),
    "dpm_karras_heun": lambda tmp: _saved(tmp, "DPMSolverMultistepScheduler", use_karras_sigmas=True,
                                          solver_type="heun", timestep_spacing="trailing"),
    "unipc_bh1": lambda tmp: _saved(tmp, "UniPCMultistepScheduler", solver_type="bh1", sigma_min=0.05,
                                    final_sigmas_type="sigma_min"),
    "euler_v": lambda tmp: _saved(tmp, "EulerDiscreteScheduler", prediction_type="v_prediction",
                                  beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1),
}


@pytest.mark.parametrize("target", list(SCHEDULER_NAMES))
@pytest.mark.parametrize("source", list(SOURCES))
def test_swapping_class_follows_diffusers_from_config(tmp_path, source, target):
    """diffusers `X.from_config(Y.from_pretrained(folder).config)` == nodegraph `create_scheduler(json, name=x)`."""
    cfg = SOURCES[source](tmp_path)
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "scheduler_config.json").write_text(json.dumps(cfg))
    loaded = getattr(diffusers, cfg["_class_name"]).from_pretrained(folder)
    ours = create_scheduler(cfg, name=target)
    theirs = getattr(diffusers, ours.class_name).from_config(loaded.config)
    a, b = denoise(ours, 15), denoise(theirs, 15)
    assert_same_schedule(ours, theirs)
    assert_trajectories_close(a, b)


def test_own_class_is_used_when_no_name_is_given():
    cfg = load_json("sd14_scheduler_config.json")
    ours = create_scheduler(cfg)
    theirs = diffusers.PNDMScheduler.from_config(cfg)
    assert_trajectories_close(denoise(ours, 25), denoise(theirs, 25))
    assert_same_schedule(ours, theirs)
