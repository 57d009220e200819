"""An SDXL base checkpoint in ComfyUI's default workflow gives diffusers' SDXL image configured as ComfyUI samples.

ComfyUI's SDXL conditioning: both encoders' penultimate hidden states side by side, bigG's pooled embedding, and
size conditioning from the latent (8·h, 8·w, crop 0, 0, target 8·h, 8·w) — given to diffusers explicitly, since
the tiny VAE downsamples by 4, not 8.
"""

from __future__ import annotations

import numpy as np
import torch

from workflows import CFG, NEGATIVE, PROMPT, SEED, STEPS, api, run_cli


def test_sdxl_default_workflow_matches_diffusers_sdxl_configured_as_comfyui(tmp_path, sdxl_models):
    import diffusers

    folder, models = sdxl_models
    ours = run_cli(tmp_path, api(n4_ckpt_name="tiny-sdxl.safetensors"), models, folder)[0]  # 64 px → 8×8 latent

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    pipe.scheduler.set_timesteps(STEPS)
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    latents = noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)
    out = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=CFG, height=32, width=32,
               latents=latents, original_size=(64, 64), target_size=(64, 64), output_type="np")
    theirs = (out.images[0] * 255).round().astype(np.uint8)
    assert ours.shape == theirs.shape == (32, 32, 3)
    diff = int(np.abs(ours.astype(int) - theirs.astype(int)).max())
    assert diff <= 1, f"max pixel difference {diff}/255"
    # sensitivity: diffusers' own size conditioning (32 px from its VAE) is another image
    other = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=CFG, height=32,
                 width=32, latents=latents, output_type="np")
    assert np.abs(ours.astype(int) - (other.images[0] * 255).round().astype(int)).max() > 1
