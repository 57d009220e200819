"""ComfyUI's default txt2img workflow gives the image of diffusers configured as ComfyUI samples (facts note).

The oracle is diffusers' own pipeline with the settings shared/notes/comfyui-facts.md lists: Euler with
`timestep_spacing="linspace"` (ComfyUI's "normal" schedule) and the first noise scaled by √(1 + σmax²) rather
than σmax. Nothing expected here is computed by nodegraph.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workflows import api, run_cli

PROMPT, NEGATIVE, SEED, STEPS, CFG = "a photo of a cat", "blurry", 5, 4, 7.5


def run(tmp_path, workflow, models_dir, sd1_folder):
    return run_cli(tmp_path, workflow, models_dir, sd1_folder)[0]


def diffusers_comfy_image(folder, scheduler_cls, seed=SEED, **scheduler_config) -> np.ndarray:
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, **scheduler_config)
    pipe.scheduler.set_timesteps(STEPS)
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(seed))
    # ComfyUI's first x is noise·√(1 + σmax²) in σ-space; the pipeline multiplies given latents by
    # init_noise_sigma. DPM-Solver works on x/√(1 + σ²) (init_noise_sigma 1), where that same x is the plain noise.
    vp = isinstance(pipe.scheduler, diffusers.DPMSolverMultistepScheduler)
    latents = noise if vp else noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)
    out = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=CFG, height=16,
               width=16, latents=latents, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    return (out.images[0] * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def euler_oracle(sd1_folder):
    from diffusers import EulerDiscreteScheduler

    return diffusers_comfy_image(sd1_folder, EulerDiscreteScheduler, timestep_spacing="linspace")


def test_default_workflow_euler_normal_matches_diffusers_configured_as_comfyui(
        tmp_path, models_dir, sd1_folder, euler_oracle, default_run):
    ours = default_run[0]
    diff = np.abs(ours.astype(int) - euler_oracle.astype(int)).max()
    assert ours.shape == (16, 16, 3)
    assert diff <= 1, f"max pixel difference {diff}/255"
    print(f"euler/normal: max pixel difference {diff}/255")
    # sensitivity: another seed is a visibly different image on this model
    other = run(tmp_path / "seed", api(n3_seed=SEED + 1), models_dir, sd1_folder)
    assert np.abs(other.astype(int) - euler_oracle.astype(int)).max() > 8


@pytest.mark.parametrize("sampler, scheduler, oracle", [
    ("euler_ancestral", "normal", ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "linspace"})),
    ("dpmpp_2m", "karras", ("DPMSolverMultistepScheduler", {"timestep_spacing": "linspace", "use_karras_sigmas": True,
                                                            "final_sigmas_type": "zero"})),
])
def test_other_samplers_match_diffusers_configured_as_comfyui(tmp_path, models_dir, sd1_folder, sampler, scheduler,
                                                              oracle):
    import diffusers

    ours = run(tmp_path, api(n3_sampler_name=sampler, n3_scheduler=scheduler), models_dir, sd1_folder)
    theirs = diffusers_comfy_image(sd1_folder, getattr(diffusers, oracle[0]), **oracle[1])
    diff = np.abs(ours.astype(int) - theirs.astype(int)).max()
    assert diff <= 1, f"{sampler}/{scheduler}: max pixel difference {diff}/255"
