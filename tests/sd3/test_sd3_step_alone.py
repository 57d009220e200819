"""graphs/sd3_denoise_step.yaml used on its own, in a graph of the test's that is not sd3.yaml: three steps from
given noise, with CFG and skip-layer guidance on the middle step, equal the loop written out by hand with
diffusers' transformer and scheduler (the formulas of StableDiffusion3Pipeline.__call__)."""

from __future__ import annotations

import torch

from tests.graphs.step_alone import run_step_graph_alone

ENCODE = """
  {id}_l: {{type: CLIPPooledEncode, text_encoder: $text.text_encoder, tokenizer: $text.tokenizer, prompt: "{p}"}}
  {id}_g: {{type: CLIPPooledEncode, text_encoder: $text.text_encoder_2, tokenizer: $text.tokenizer_2, prompt: "{p}"}}
  {id}_t5: {{type: T5TextEncode, text_encoder: $t5_text.text_encoder_3, tokenizer: $t5_text.tokenizer_3, prompt: "{p}",
            max_sequence_length: 16}}
  {id}: {{type: SD3Conditioning, clip_l: ${id}_l.embeddings, clip_g: ${id}_g.embeddings, pooled_l: ${id}_l.pooled,
         pooled_g: ${id}_g.pooled, t5: ${id}_t5.embeddings, transformer: $transformer.transformer,
         max_sequence_length: 16}}"""
WRAPPER = """
nodegraph: 1
inputs:
  model: {type: str}
nodes:
  text: {type: LoadSD3CLIP, model: $inputs.model}
  t5_text: {type: LoadSD3T5, model: $inputs.model}
  transformer: {type: LoadTransformer, model: $inputs.model}""" + ENCODE.format(id="cond", p="a red fox") + \
    ENCODE.format(id="uncond", p="blurry") + """
  vae: {type: LoadVAE, model: $inputs.model}
  scheduler: {type: LoadScheduler, model: $inputs.model}
  seed: {type: Seed, seed: 4}
  noise: {type: SD3Latent, generator: $seed.generator, transformer: $transformer.transformer, vae: $vae.vae,
          height: 32, width: 32}
  timesteps: {type: SchedulerSetTimesteps, scheduler: $scheduler.scheduler, steps: 3}
  denoise:
    type: repeat
    over: $timesteps.timesteps
    state: {latents: $noise.latents}
    nodes:
      step:
        type: ./sd3_denoise_step.yaml
        transformer: $transformer.transformer
        scheduler: $timesteps.scheduler
        embeddings: $cond.embeddings
        pooled: $cond.pooled
        negative_embeddings: $uncond.embeddings
        negative_pooled: $uncond.pooled
        latents: $state.latents
        t: $loop.item
        index: $loop.index
        steps: 3
        guidance_scale: 4.0
        skip_guidance_layers: "1, 2"
        skip_layer_guidance_scale: 2.0
        skip_layer_guidance_start: 0.1
        skip_layer_guidance_stop: 0.5
    next: {latents: $step.latents}
outputs:
  noise: $noise.latents
  cond: $cond.embeddings
  pooled: $cond.pooled
  uncond: $uncond.embeddings
  uncond_pooled: $uncond.pooled
  latents: $denoise.latents
"""


def test_the_step_graph_alone_equals_the_loop_by_hand(tiny_sd3, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    out = run_step_graph_alone("sd3_denoise_step.yaml", WRAPPER, tmp_path, tiny_sd3)

    transformer = SD3Transformer2DModel.from_pretrained(tiny_sd3, subfolder="transformer")
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_sd3, subfolder="scheduler")
    scheduler.set_timesteps(3)
    x = out["noise"]
    context = torch.cat([out["uncond"], out["cond"]])
    pooled = torch.cat([out["uncond_pooled"], out["pooled"]])
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            uncond, text = transformer(torch.cat([x, x]), context, pooled, t.expand(2), return_dict=False)[0].chunk(2)
            v = uncond + 4.0 * (text - uncond)
            if 3 * 0.1 < i < 3 * 0.5:  # step 1 only
                skipped = transformer(x, out["cond"], out["pooled"], t.expand(1), skip_layers=[1, 2],
                                      return_dict=False)[0]
                v = v + (text - skipped) * 2.0
            x = scheduler.step(v, t, x).prev_sample
    torch.testing.assert_close(out["latents"], x, rtol=0, atol=1e-6)
    assert (out["latents"] - out["noise"]).abs().max() > 0.1  # the steps moved the latents
