"""bench_comfy.py --sdxl's parts: the hand-written twin of ComfyUI's default graph on an SDXL checkpoint (the base
pass of the `sdxl_simple_example` template, as `nodegraph import-comfy` translates it: LoadUNet / LoadSDXLCLIP /
LoadVAE, ComfyTextEncode with both encoders, ComfySigmas → ComfyNoise → a repeat of ComfyDenoise with the pooled
embeddings and ComfySamplerStep euler, VAEDecode), and the SDXL-size single file it runs on."""

from __future__ import annotations

from pathlib import Path

HAND_WRITTEN_SDXL = """
nodegraph: 1
inputs:
  model: {type: str}
  config: {type: str, default: ""}
  prompt: {type: str, default: a photo of a cat}
  negative: {type: str, default: blurry}
  cfg: {type: float, default: 7.5}
  size: {type: int, default: 64}
  steps: {type: int, default: 4}
nodes:
  unet: {type: LoadUNet, model: $inputs.model, config: $inputs.config}
  clip: {type: LoadSDXLCLIP, model: $inputs.model, config: $inputs.config}
  vae: {type: LoadVAE, model: $inputs.model, config: $inputs.config}
  pos: {type: ComfyTextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer,
        text_encoder_2: $clip.text_encoder_2, tokenizer_2: $clip.tokenizer_2, text: $inputs.prompt, family: sdxl}
  neg: {type: ComfyTextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer,
        text_encoder_2: $clip.text_encoder_2, tokenizer_2: $clip.tokenizer_2, text: $inputs.negative, family: sdxl}
  empty: {type: ComfyEmptyLatent, width: $inputs.size, height: $inputs.size}
  sigmas: {type: ComfySigmas, scheduler: normal, steps: $inputs.steps}
  noise: {type: ComfyNoise, latents: $empty.latents, sigmas: $sigmas.sigmas, seed: 5}
  sample:
    type: repeat
    over: $sigmas.steps
    state: {x: $noise.latents}
    nodes:
      x0: {type: ComfyDenoise, unet: $unet.unet, latents: $state.x, sigmas: $sigmas.sigmas, index: $loop.item,
           positive: $pos.embeddings, negative: $neg.embeddings, positive_pooled: $pos.pooled,
           negative_pooled: $neg.pooled, cfg: $inputs.cfg}
      euler: {type: ComfySamplerStep, sampler: euler, latents: $state.x, denoised: $x0.denoised,
              sigmas: $sigmas.sigmas, index: $loop.item}
    next: {x: $euler.latents}
  decode: {type: VAEDecode, vae: $vae.vae, latents: $sample.x}
outputs:
  image: $decode.image
"""


def sdxl_model_files(args) -> tuple[Path, str]:
    """(models/ folder holding checkpoints/model.safetensors, the SDXL config folder): the SGM-layout single file
    written once from the random bf16 SDXL base folder (about 6.5 GB), or from the tests' tiny SDXL with --tiny."""
    from tests.models.single_file.ldm_layout import write_sdxl_file

    root = Path(args.cache).expanduser()
    folder = root / ("tiny-sdxl/base" if args.tiny else "sdxl-base-random-bf16")
    if not (folder / "model_index.json").exists():
        raise SystemExit(f"{folder} is missing: the SDXL benchmarks write it (bench_few_steps.py / bench_memory.py)")
    models = root / ("comfy-sdxl-tiny-models" if args.tiny else "comfy-sdxl-models")
    target = models / "checkpoints" / "model.safetensors"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_sdxl_file(folder, target.with_suffix(".partial"))
        target.with_suffix(".partial").rename(target)
    return models, str(folder)
