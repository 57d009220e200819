"""graphs/flux_denoise_step.yaml used on its own, in a graph of the test's that is not flux.yaml: two steps from
given noise, with true CFG, equal the loop written out by hand with diffusers' transformer, packing and scheduler."""

from __future__ import annotations

import torch

from tests.graphs.step_alone import run_step_graph_alone

WRAPPER = """
nodegraph: 1
inputs:
  model: {type: str}
nodes:
  text: {type: LoadFluxText, model: $inputs.model}
  pooled: {type: CLIPPooledEncode, text_encoder: $text.clip, tokenizer: $text.clip_tokenizer, prompt: "a red fox"}
  cond: {type: T5TextEncode, text_encoder: $text.t5, tokenizer: $text.t5_tokenizer, prompt: "a red fox",
         max_sequence_length: 20}
  npooled: {type: CLIPPooledEncode, text_encoder: $text.clip, tokenizer: $text.clip_tokenizer, prompt: "blurry"}
  uncond: {type: T5TextEncode, text_encoder: $text.t5, tokenizer: $text.t5_tokenizer, prompt: "blurry",
           max_sequence_length: 20}
  transformer: {type: LoadTransformer, model: $inputs.model}
  vae: {type: LoadVAE, model: $inputs.model}
  scheduler: {type: LoadScheduler, model: $inputs.model}
  seed: {type: Seed, seed: 4}
  noise: {type: FluxLatent, generator: $seed.generator, transformer: $transformer.transformer, vae: $vae.vae,
          height: 32, width: 48}
  timesteps: {type: SchedulerSetTimesteps, scheduler: $scheduler.scheduler, steps: 2, sigmas: [1.0, 0.5], mu: 0.7}
  denoise:
    type: repeat
    over: $timesteps.timesteps
    state: {latents: $noise.latents}
    nodes:
      step:
        type: ./flux_denoise_step.yaml
        transformer: $transformer.transformer
        scheduler: $timesteps.scheduler
        embeddings: $cond.embeddings
        pooled: $pooled.pooled
        negative_embeddings: $uncond.embeddings
        negative_pooled: $npooled.pooled
        latents: $state.latents
        t: $loop.item
        guidance: 2.0
        true_cfg_scale: 1.5
    next: {latents: $step.latents}
outputs:
  noise: $noise.latents
  embeddings: $cond.embeddings
  pooled: $pooled.pooled
  negative_embeddings: $uncond.embeddings
  negative_pooled: $npooled.pooled
  latents: $denoise.latents
"""


def test_the_step_graph_alone_equals_the_loop_by_hand(tiny_flux_dev, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    out = run_step_graph_alone("flux_denoise_step.yaml", WRAPPER, tmp_path, tiny_flux_dev)

    transformer = FluxTransformer2DModel.from_pretrained(tiny_flux_dev, subfolder="transformer")
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_flux_dev, subfolder="scheduler")
    scheduler.set_timesteps(2, sigmas=[1.0, 0.5], mu=0.7)
    noise = out["noise"]
    b, c, h, w = noise.shape
    x = FluxPipeline._pack_latents(noise, b, c, h, w)
    img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32)
    txt_ids = torch.zeros(out["embeddings"].shape[1], 3)
    guidance = torch.full([1], 2.0)

    def velocity(x, t, embeddings, pooled):
        return transformer(x, timestep=t.expand(1) / 1000, guidance=guidance, pooled_projections=pooled,
                           encoder_hidden_states=embeddings, txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]

    with torch.no_grad():
        for t in scheduler.timesteps:
            pos = velocity(x, t, out["embeddings"], out["pooled"])
            neg = velocity(x, t, out["negative_embeddings"], out["negative_pooled"])
            x = scheduler.step(neg + 1.5 * (pos - neg), t, x).prev_sample
    expected = FluxPipeline._unpack_latents(x, h * 4, w * 4, 4)  # pixels = 4 · latents (the tiny VAE's factor)
    torch.testing.assert_close(out["latents"], expected, rtol=0, atol=1e-6)
    assert (out["latents"] - noise).abs().max() > 0.1  # the steps moved the latents


def test_the_flux_graphs_get_the_flux_latent_preview():
    from nodegraph.serve.preview import preview_family
    from nodegraph.spec.loader import load_graph

    for graph in ("flux.yaml", "flux_img2img.yaml", "flux_denoise_step.yaml"):
        assert preview_family(load_graph(f"graphs/{graph}").checked) == "flux"
