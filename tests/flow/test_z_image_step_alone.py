"""graphs/z_image_denoise_step.yaml used on its own, in a graph of the test's that is not z_image.yaml: two steps
from given noise equal the loop written out by hand with diffusers' transformer and scheduler. The same for
graphs/z_image_cached_step.yaml (what z_image.yaml repeats) with `cache: none`."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.graphs.step_alone import ROOT, run_step_graph_alone

WRAPPER = """
nodegraph: 1
inputs:
  model: {type: str}
nodes:
  text: {type: LoadTextEncoder, model: $inputs.model}
  cond: {type: TextEncode, text_encoder: $text.text_encoder, tokenizer: $text.tokenizer, prompt: "a red fox",
         max_sequence_length: 64}
  transformer: {type: LoadTransformer, model: $inputs.model}
  vae: {type: LoadVAE, model: $inputs.model}
  scheduler: {type: LoadScheduler, model: $inputs.model}
  seed: {type: Seed, seed: 4}
  noise: {type: ZImageLatent, generator: $seed.generator, transformer: $transformer.transformer, vae: $vae.vae,
          height: 64, width: 64}
  timesteps: {type: SchedulerSetTimesteps, scheduler: $scheduler.scheduler, steps: 2, sigmas: [1.0, 0.5]}
  denoise:
    type: repeat
    over: $timesteps.timesteps
    state: {latents: $noise.latents}
    nodes:
      step:
        type: ./z_image_denoise_step.yaml
        transformer: $transformer.transformer
        scheduler: $timesteps.scheduler
        embeddings: $cond.embeddings
        latents: $state.latents
        t: $loop.item
    next: {latents: $step.latents}
outputs:
  noise: $noise.latents
  embeddings: $cond.embeddings
  latents: $denoise.latents
"""


CACHED_WRAPPER = WRAPPER.replace("type: ./z_image_denoise_step.yaml", "type: ./z_image_cached_step.yaml").replace(
    "        t: $loop.item\n", "        t: $loop.item\n        index: $loop.index\n        cache: none\n")


@pytest.mark.parametrize("graph, wrapper", [("z_image_denoise_step.yaml", WRAPPER),
                                            ("z_image_cached_step.yaml", CACHED_WRAPPER)])
def test_the_step_graph_alone_equals_the_loop_by_hand(tiny_z_image, tmp_path, graph, wrapper):
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel

    assert graph in wrapper
    shutil.copy(ROOT / "graphs" / "z_image_denoise_step.yaml", tmp_path)  # the cached step graph includes it
    out = run_step_graph_alone(graph, wrapper, tmp_path, tiny_z_image)

    transformer = ZImageTransformer2DModel.from_pretrained(tiny_z_image, subfolder="transformer")
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_z_image, subfolder="scheduler")
    scheduler.set_timesteps(2, sigmas=[1.0, 0.5])
    x, caption = out["noise"], out["embeddings"][0]
    with torch.no_grad():
        for t in scheduler.timesteps:  # ZImagePipeline's step: (1000 - t) / 1000, (C, 1, H, W) lists, negated
            (v,) = transformer([x[0].unsqueeze(1)], ((1000 - t) / 1000).expand(1), [caption], return_dict=False)[0]
            x = scheduler.step(-v.squeeze(1)[None], t, x).prev_sample
    torch.testing.assert_close(out["latents"], x, rtol=0, atol=1e-6)
    assert (out["latents"] - out["noise"]).abs().max() > 0.1  # the steps moved the latents
