"""graphs/lcm_denoise_step.yaml used on its own, in a graph of the test's that is not lcm.yaml: two LCM steps from
given noise equal the loop written out by hand with diffusers' UNet and LCMScheduler, the generator's noise
between the steps included."""

from __future__ import annotations

import torch

from tests.graphs.step_alone import run_step_graph_alone

WRAPPER = """
nodegraph: 1
inputs:
  model: {type: str}
nodes:
  vae: {type: LoadVAE, model: $inputs.model}
  clip: {type: LoadCLIP, model: $inputs.model}
  unet: {type: LoadUNet, model: $inputs.model}
  scheduler: {type: LoadScheduler, model: $inputs.model, scheduler: lcm, sd_pipeline: true}
  seed: {type: Seed, seed: 11}
  timesteps: {type: SchedulerSetTimesteps, scheduler: $scheduler.scheduler, steps: 2}
  noise: {type: RandomLatent, generator: $seed.generator, unet: $unet.unet, vae: $vae.vae,
          scheduler: $timesteps.scheduler, height: 64, width: 64}
  cond: {type: TextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer, prompt: "a red cube"}
  denoise:
    type: repeat
    over: $timesteps.timesteps
    state: {latents: $noise.latents}
    nodes:
      step:
        type: ./lcm_denoise_step.yaml
        unet: $unet.unet
        scheduler: $timesteps.scheduler
        embeddings: $cond.embeddings
        latents: $state.latents
        t: $loop.item
        generator: $seed.generator
    next: {latents: $step.latents}
outputs:
  noise: $noise.latents
  embeddings: $cond.embeddings
  latents: $denoise.latents
"""


def test_the_lcm_step_graph_alone_equals_the_loop_by_hand(tiny_sd, tmp_path):
    from diffusers import LCMScheduler, StableDiffusionPipeline

    out = run_step_graph_alone("lcm_denoise_step.yaml", WRAPPER, tmp_path, tiny_sd)

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(2)
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(out["noise"].shape, generator=generator)  # the same draw, so the generator is where ours is
    assert torch.equal(x, out["noise"])
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = pipe.unet(scheduler.scale_model_input(x, t), t, encoder_hidden_states=out["embeddings"]).sample
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
    torch.testing.assert_close(out["latents"], x, rtol=0, atol=1e-5)
    assert (out["latents"] - out["noise"]).abs().max() > 0.1  # the steps moved the latents
