"""dpmpp_2s_ancestral and uni_pc / uni_pc_bh2 as ComfyUI runs them, each against diffusers run here.

* dpmpp_2s_ancestral (k-diffusion's `sample_dpmpp_2s_ancestral`, eta 1): each step is one DPM-Solver++(2S)
  step to σ_down — diffusers' DPMSolverSinglestepScheduler (order 2, dpmsolver++, midpoint) over the σ
  [σ_i, λ-midpoint, σ_down] — then σ_up of noise from a fresh generator seeded with the seed (ComfyUI's rule).
  σ_down / σ_up are Karras et al.'s ancestral split with eta 1, written out below.
* uni_pc: diffusers' UniPCMultistepScheduler with predict_x0, lower_order_final, solver_order min(3, steps − 1),
  bh1 for "uni_pc" and bh2 for "uni_pc_bh2", over ComfyUI's σ with the final 0 replaced by 0.001 as ComfyUI
  does. ComfyUI evaluates that σ's λ in float32, where 1 − 1/(1 + 10⁻⁶) rounds to 2⁻²⁰: its last step really
  ends at σ = 2⁻¹⁰, which the oracle is told (0.001 itself leaves the two 2e-5 apart). The same float32 λ
  near σ_min (1 − α² ≈ 8.5e-4 kept to 7 digits) keeps them up to 1.1e-4 apart on values up to 22 (3 steps;
  ≤ 2.5e-5 at 12): the tolerance is rtol = atol = 1e-4, as for the other samplers.
* The `k-diffusion` package is not the oracle: its install pulls wandb, torchvision, kornia, clip and takes
  numpy down to 1.26. Its own `sample_dpmpp_2s_ancestral`, run once outside the suite, agreed within 4.2e-5.
* KSampler / KSamplerAdvanced schedule dpm_2, dpm_2_ancestral, uni_pc and uni_pc_bh2 over one more step and
  drop the penultimate σ (comfy/samplers.py `KSampler.calculate_sigmas`), checked against diffusers' σ.
* On the tiny checkpoint, `nodegraph run workflow.json` equals diffusers' pipeline (uni_pc) or the diffusers
  loop below (dpmpp_2s_ancestral) within 1/255, and `import-comfy`'s YAML gives the same image bit for bit.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from test_schedules_and_samplers import SD_BETAS, diffusers_sigmas, ours_final, toy_eps
from workflows import CFG, NEGATIVE, PROMPT, SEED, api, diffusers_comfy_image, run_cli

COMFY_FINAL_SIGMA = 2.0 ** -10  # ComfyUI's 0.001 after its float32 σ → λ conversion (see above)


def ancestral_split(sigma: float, sigma_next: float) -> tuple[float, float]:
    """(σ_down, σ_up) with eta 1 (Karras et al. 2022 / k-diffusion): σ_up² = σ_next²(σ² − σ_next²)/σ²."""
    sigma_up = math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2)
    return math.sqrt(sigma_next ** 2 - sigma_up ** 2), sigma_up


def diffusers_2s_step(eps_model, x, sigma: float, sigma_down: float):
    """x (σ-space) at σ → σ_down by one DPM-Solver++(2S) step of diffusers' singlestep solver (it works on x/√(1+σ²))."""
    from diffusers import DPMSolverSinglestepScheduler

    scheduler = DPMSolverSinglestepScheduler(**SD_BETAS, solver_order=2, algorithm_type="dpmsolver++",
                                             solver_type="midpoint", final_sigmas_type="sigma_min")
    scheduler.set_timesteps(2)  # orders [1, 2]: a first-order step to the midpoint, then the 2S update
    sigma_mid = math.sqrt(sigma * sigma_down)  # r = 1/2 in λ = −log σ
    scheduler.sigmas = torch.tensor([sigma, sigma_mid, sigma_down], dtype=torch.float32)
    x = x / math.sqrt(1 + sigma ** 2)
    for t, s in zip(scheduler.timesteps, (sigma, sigma_mid)):
        x = scheduler.step(eps_model(x, s), t, x).prev_sample
    return x * math.sqrt(1 + sigma_down ** 2)


def diffusers_2s_ancestral(eps_model, x, sigmas, seed: int):
    """The whole sampler: diffusers' 2S steps plus ancestral noise; into σ = 0 the x₀ estimate itself."""
    generator = torch.Generator("cpu").manual_seed(seed)
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        if sigma_next == 0:
            return x - sigma * eps_model(x / math.sqrt(1 + sigma ** 2), sigma)
        sigma_down, sigma_up = ancestral_split(sigma, sigma_next)
        x = diffusers_2s_step(eps_model, x, sigma, sigma_down)
        x = x + torch.randn(x.shape, generator=generator) * sigma_up
    return x


@pytest.mark.parametrize("schedule", ["normal", "karras"])
def test_dpmpp_2s_ancestral_is_diffusers_2s_steps_with_comfyui_noise(schedule):
    from nodegraph.comfy.schedules import sigmas_for

    steps, seed = 12, 3
    sigmas = sigmas_for(schedule, steps)
    noise = torch.randn((1, 4, 6, 6), generator=torch.Generator("cpu").manual_seed(seed))
    ours = ours_final("dpmpp_2s_ancestral", sigmas, noise, seed)
    theirs = diffusers_2s_ancestral(lambda x, s: toy_eps(x, None), noise * math.sqrt(1 + float(sigmas[0]) ** 2),
                                    sigmas, seed)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    for other in ("euler_ancestral", "dpm_2_ancestral"):  # the second-order step really is a different one
        assert (ours_final(other, sigmas, noise, seed) - theirs).abs().max() > 1e-2


def diffusers_uni_pc(sigmas, noise, variant: str):
    """diffusers' UniPC over `sigmas` (ComfyUI's, ending at 0 or at leftover noise), from ComfyUI's first x."""
    from diffusers import UniPCMultistepScheduler

    steps = len(sigmas) - 1
    scheduler = UniPCMultistepScheduler(**SD_BETAS, solver_order=min(3, steps - 1), solver_type=variant,
                                        predict_x0=True, lower_order_final=True)
    scheduler.set_timesteps(steps)
    scheduler.sigmas = sigmas.clone().float()
    if scheduler.sigmas[-1] == 0:
        scheduler.sigmas[-1] = COMFY_FINAL_SIGMA
    x = noise  # ComfyUI's x = noise·√(1 + σ₀²) in σ-space is the plain noise in diffusers' VP form
    for t in scheduler.timesteps:
        x = scheduler.step(toy_eps(x, t), t, x).prev_sample
    return x * math.sqrt(1 + float(scheduler.sigmas[-1]) ** 2)  # back to σ-space, as ComfyUI returns it


@pytest.mark.parametrize("sampler, variant", [("uni_pc", "bh1"), ("uni_pc_bh2", "bh2")])
@pytest.mark.parametrize("steps, config", [
    (12, {"timestep_spacing": "linspace"}),
    (12, {"timestep_spacing": "linspace", "use_karras_sigmas": True}),
    (3, {"timestep_spacing": "linspace"}),  # order 2: warm-up and lower-order final meet
])
def test_uni_pc_matches_diffusers_unipc(sampler, variant, steps, config):
    sigmas = diffusers_sigmas(steps, **config)
    noise = torch.randn((1, 4, 6, 6), generator=torch.Generator("cpu").manual_seed(3))
    ours = ours_final(sampler, sigmas, noise, 3)
    theirs = diffusers_uni_pc(sigmas, noise, variant)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # sensitivity: the other B(h) variant, and Euler, end elsewhere
    assert (diffusers_uni_pc(sigmas, noise, "bh2" if variant == "bh1" else "bh1") - theirs).abs().max() > 1e-3
    assert (ours_final("euler", sigmas, noise, 3) - theirs).abs().max() > 1e-2


def test_uni_pc_with_leftover_noise_stops_at_the_last_sigma():
    # KSamplerAdvanced's first half (return_with_leftover_noise): no 0.001, the result is x at σ_end
    sigmas = diffusers_sigmas(12, timestep_spacing="linspace")[:8]
    noise = torch.randn((1, 4, 6, 6), generator=torch.Generator("cpu").manual_seed(4))
    ours = ours_final("uni_pc", sigmas, noise, 4)
    torch.testing.assert_close(ours, diffusers_uni_pc(sigmas, noise, "bh1"), rtol=1e-4, atol=1e-4)


def test_uni_pc_with_one_step_only_rescales_x():
    # ComfyUI's order = min(3, steps − 1) is 0 for one step: no update, x·α(σ₀)/α(0.001)
    sigmas = torch.tensor([3.0, 0.0])
    x = torch.randn((1, 4, 6, 6), generator=torch.Generator("cpu").manual_seed(5))
    ours = ours_final("uni_pc", sigmas, x / math.sqrt(10.0), 5)
    torch.testing.assert_close(ours, x * math.sqrt(1 + COMFY_FINAL_SIGMA ** 2) / math.sqrt(10.0), rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("sampler, dropped", [
    ("uni_pc", True), ("uni_pc_bh2", True), ("dpm_2", True), ("dpm_2_ancestral", True),
    ("dpmpp_2s_ancestral", False), ("euler", False),
])
def test_ksampler_schedule_drops_the_penultimate_sigma_for_dpm_2_and_uni_pc(sampler, dropped):
    from nodegraph.nodes.comfy_sampling import ComfySigmas

    def sigmas(**inputs):
        return ComfySigmas().run(ComfySigmas.Inputs(scheduler="normal", sampler=sampler, **inputs), None)["sigmas"]

    longer = diffusers_sigmas(4, timestep_spacing="linspace")  # σ(999), σ(666), σ(333), σ(0), 0
    expected = torch.cat([longer[:-2], longer[-1:]]) if dropped else diffusers_sigmas(3, timestep_spacing="linspace")
    torch.testing.assert_close(sigmas(steps=3), expected, rtol=2e-5, atol=1e-6)
    # denoise 0.5: int(3 / 0.5) = 6 steps, the rule applied to those, then the last 4 σ kept (KSampler.set_steps)
    longer = diffusers_sigmas(7, timestep_spacing="linspace")
    tail = (torch.cat([longer[:-2], longer[-1:]]) if dropped else diffusers_sigmas(6, timestep_spacing="linspace"))[-4:]
    torch.testing.assert_close(sigmas(steps=3, denoise=0.5), tail, rtol=2e-5, atol=1e-6)
    # KSamplerAdvanced cuts that same schedule: steps 0–2 with leftover noise, then 2 to the end
    torch.testing.assert_close(sigmas(steps=3, end_step=2, return_with_leftover_noise="enable"), expected[:3])
    torch.testing.assert_close(sigmas(steps=3, start_step=2), expected[2:])


# -- the tiny checkpoint ------------------------------------------------------------------------------------------

def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture(scope="module")
def uni_pc_run(models_dir, sd1_folder, tmp_path_factory):
    # 3 steps: ComfyUI's uni_pc schedule is then σ(999), σ(666), σ(333), 0 — whole timesteps, the same ones
    # diffusers' linspace spacing gives the UNet over 3 steps
    workflow = api(n3_sampler_name="uni_pc", n3_steps=3)
    return workflow, run_cli(tmp_path_factory.mktemp("uni_pc"), workflow, models_dir, sd1_folder)[0]


def test_uni_pc_workflow_matches_diffusers_unipc_pipeline(uni_pc_run, sd1_folder, default_run):
    from diffusers import UniPCMultistepScheduler

    class ComfyEnd(UniPCMultistepScheduler):
        def set_timesteps(self, *args, **kwargs):
            super().set_timesteps(*args, **kwargs)
            self.sigmas[-1] = COMFY_FINAL_SIGMA

    theirs = diffusers_comfy_image(sd1_folder, ComfyEnd, steps=3, timestep_spacing="linspace", solver_order=2,
                                   solver_type="bh1", predict_x0=True, lower_order_final=True)
    diff = max_diff(uni_pc_run[1], theirs)
    print(f"uni_pc/normal, 3 steps: max pixel difference {diff}/255")
    assert diff <= 1
    assert max_diff(uni_pc_run[1], default_run[0]) > 8  # not the Euler image


def test_sampler_custom_with_ksampler_select_uni_pc_bh2_matches_diffusers(tmp_path, models_dir, sd1_folder,
                                                                          uni_pc_run):
    # SamplerCustom takes BasicScheduler's σ as they are (no dropped σ): 4 steps at t = 999, 666, 333, 0
    from diffusers import UniPCMultistepScheduler

    doc = api()
    doc["12"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "uni_pc_bh2"}}
    doc["13"] = {"class_type": "BasicScheduler", "inputs": {"scheduler": "normal", "steps": 4, "denoise": 1.0,
                                                            "model": ["4", 0]}}
    doc["3"] = {"class_type": "SamplerCustom", "inputs": {
        "add_noise": True, "noise_seed": SEED, "cfg": CFG, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "sampler": ["12", 0], "sigmas": ["13", 0], "latent_image": ["5", 0]}}
    ours = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]
    comfy_normal = diffusers_sigmas(4, timestep_spacing="linspace")  # ComfyUI's "normal" (see its own test)

    class BasicSchedulerSigmas(UniPCMultistepScheduler):
        def set_timesteps(self, *args, **kwargs):
            super().set_timesteps(*args, **kwargs)
            self.sigmas = comfy_normal.clone()
            self.sigmas[-1] = COMFY_FINAL_SIGMA
            self.timesteps = torch.tensor([999, 666, 333, 0])

    theirs = diffusers_comfy_image(sd1_folder, BasicSchedulerSigmas, steps=4, timestep_spacing="linspace",
                                   solver_order=3, solver_type="bh2", predict_x0=True, lower_order_final=True)
    diff = max_diff(ours, theirs)
    print(f"SamplerCustom uni_pc_bh2/normal, 4 steps: max pixel difference {diff}/255")
    assert diff <= 1
    assert max_diff(ours, uni_pc_run[1]) > 3  # not KSampler's uni_pc schedule (7/255 apart on this model)


def diffusers_2s_image(sd1_folder, steps: int):
    """ComfyUI's dpmpp_2s_ancestral on the tiny checkpoint, with diffusers' UNet, text encoder, VAE and solver."""
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd1_folder, safety_checker=None)
    table = ((1 - pipe.scheduler.alphas_cumprod) / pipe.scheduler.alphas_cumprod) ** 0.5
    positive, negative = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    context = torch.cat([negative, positive])

    def eps_model(x_in, sigma):  # CFG on ε at ComfyUI's integer timestep (nearest in log σ)
        t = int((table.log() - math.log(sigma)).abs().argmin())
        with torch.no_grad():
            uncond, cond = pipe.unet(torch.cat([x_in] * 2), t, encoder_hidden_states=context).sample.chunk(2)
        return uncond + CFG * (cond - uncond)

    sigmas = diffusers_sigmas(steps, timestep_spacing="linspace")  # ComfyUI's "normal" (test_schedules_and_samplers)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    x = diffusers_2s_ancestral(eps_model, noise * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas, SEED)
    with torch.no_grad():
        image = pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample
    pixels = pipe.image_processor.postprocess(image, output_type="np")[0]
    return (pixels * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def dpmpp_2s_run(models_dir, sd1_folder, tmp_path_factory):
    workflow = api(n3_sampler_name="dpmpp_2s_ancestral")
    return workflow, run_cli(tmp_path_factory.mktemp("dpmpp_2s"), workflow, models_dir, sd1_folder)[0]


def test_dpmpp_2s_ancestral_workflow_matches_diffusers_2s_loop(dpmpp_2s_run, sd1_folder, default_run):
    from workflows import STEPS

    theirs = diffusers_2s_image(sd1_folder, STEPS)
    diff = max_diff(dpmpp_2s_run[1], theirs)
    print(f"dpmpp_2s_ancestral/normal, {STEPS} steps: max pixel difference {diff}/255")
    assert diff <= 1
    assert max_diff(dpmpp_2s_run[1], default_run[0]) > 8


@pytest.mark.parametrize("which", ["uni_pc_run", "dpmpp_2s_run"])
def test_import_comfy_yaml_gives_the_workflow_image(which, request, tmp_path, models_dir, sd1_folder):
    from PIL import Image

    from nodegraph.cli import main

    workflow, image = request.getfixturevalue(which)
    source = tmp_path / "workflow.json"
    source.write_text(json.dumps(workflow))
    graph = tmp_path / "imported" / "graph.yaml"
    assert main(["import-comfy", str(source), "-o", str(graph), "--models", str(models_dir)]) == 0
    text = graph.read_text()
    assert "uni_pc" in text if which == "uni_pc_run" else "dpmpp_2s_ancestral" in text
    out = tmp_path / "out"
    assert main(["run", str(graph), "--out", str(out), "-q", "--set", f"config={sd1_folder}"]) == 0
    (png,) = out.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), image)
