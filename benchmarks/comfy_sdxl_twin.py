"""bench_comfy.py --sdxl's parts: the hand-written twin of ComfyUI's default graph on an SDXL checkpoint (the base
pass of the `sdxl_simple_example` template, as `nodegraph import-comfy` translates it: LoadUNet / LoadSDXLCLIP /
LoadVAE, ComfyTextEncode with both encoders, ComfySigmas → ComfyNoise → a repeat of ComfyDenoise with the pooled
embeddings and ComfySamplerStep euler, VAEDecode), and the SDXL-size single file it runs on; for `--refiner`, the
whole template (base, then refiner) as shipped, its twin, and a refiner-size random file."""

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


# The whole sdxl_simple_example template (base, then refiner) written by hand: the base's KSamplerAdvanced runs
# steps 0 → `switch` and keeps the leftover noise, the refiner's continues from `switch` to the end without new
# noise (ComfySigmas cuts the schedule as KSamplerAdvanced does), and the refiner's VAE decodes.
HAND_WRITTEN_SDXL_REFINER = """
nodegraph: 1
inputs:
  model: {type: str}
  refiner: {type: str}
  config: {type: str, default: ""}
  refiner_config: {type: str, default: ""}
  prompt: {type: str, default: a photo of a cat}
  negative: {type: str, default: "text, watermark"}
  cfg: {type: float, default: 8.0}
  size: {type: int, default: 64}
  steps: {type: int, default: 4}
  switch: {type: int, default: 2}
  seed: {type: int, default: 5}
nodes:
  unet: {type: LoadUNet, model: $inputs.model, config: $inputs.config}
  clip: {type: LoadSDXLCLIP, model: $inputs.model, config: $inputs.config}
  refiner_unet: {type: LoadUNet, model: $inputs.refiner, config: $inputs.refiner_config}
  refiner_clip: {type: LoadSDXLCLIP, model: $inputs.refiner, config: $inputs.refiner_config, first_encoder: false}
  refiner_vae: {type: LoadVAE, model: $inputs.refiner, config: $inputs.refiner_config}
  pos: {type: ComfyTextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer,
        text_encoder_2: $clip.text_encoder_2, tokenizer_2: $clip.tokenizer_2, text: $inputs.prompt, family: sdxl}
  neg: {type: ComfyTextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer,
        text_encoder_2: $clip.text_encoder_2, tokenizer_2: $clip.tokenizer_2, text: $inputs.negative, family: sdxl}
  refiner_pos: {type: ComfyTextEncode, text_encoder: $refiner_clip.text_encoder_2,
                tokenizer: $refiner_clip.tokenizer_2, text: $inputs.prompt, family: sdxl_refiner}
  refiner_neg: {type: ComfyTextEncode, text_encoder: $refiner_clip.text_encoder_2,
                tokenizer: $refiner_clip.tokenizer_2, text: $inputs.negative, family: sdxl_refiner}
  empty: {type: ComfyEmptyLatent, width: $inputs.size, height: $inputs.size}
  sigmas: {type: ComfySigmas, scheduler: normal, steps: $inputs.steps, end_step: $inputs.switch,
           return_with_leftover_noise: enable}
  noise: {type: ComfyNoise, latents: $empty.latents, sigmas: $sigmas.sigmas, seed: $inputs.seed}
  base:
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
  refiner_sigmas: {type: ComfySigmas, scheduler: normal, steps: $inputs.steps, start_step: $inputs.switch}
  refine:
    type: repeat
    over: $refiner_sigmas.steps
    state: {x: $base.x}
    nodes:
      rx0: {type: ComfyDenoise, unet: $refiner_unet.unet, latents: $state.x, sigmas: $refiner_sigmas.sigmas,
            index: $loop.item, positive: $refiner_pos.embeddings, negative: $refiner_neg.embeddings,
            positive_pooled: $refiner_pos.pooled, negative_pooled: $refiner_neg.pooled, cfg: $inputs.cfg}
      reuler: {type: ComfySamplerStep, sampler: euler, latents: $state.x, denoised: $rx0.denoised,
               sigmas: $refiner_sigmas.sigmas, index: $loop.item}
    next: {x: $reuler.latents}
  decode: {type: VAEDecode, vae: $refiner_vae.vae, latents: $refine.x}
outputs:
  image: $decode.image
"""


def sdxl_refiner_file(args, base: Path) -> tuple[Path, str]:
    """(checkpoints/refiner.safetensors beside the base file, its config folder or "" for the built-in one): with
    --tiny the tests' tiny refiner; else SDXL
    refiner 1.0's architecture (the UNet config nodegraph infers for refiner files, 2.3 B parameters) with seeded
    Gaussian bf16 weights (× 0.02, norm weights 1, as bench_sdxl.py writes the base), plus the base folder's
    OpenCLIP bigG and VAE, in the SGM layout; written once, one tensor at a time (about 6 GB)."""
    import json

    import torch
    from safetensors.torch import load_file

    from random_safetensors import write_streamed
    from tests.models.single_file.ldm_layout import open_clip_to_ldm, unet_to_ldm, vae_to_ldm, write_sdxl_file

    root = Path(args.cache).expanduser()
    target = root / ("comfy-sdxl-tiny-models" if args.tiny else "comfy-sdxl-models") / "checkpoints" / \
        "refiner.safetensors"
    tiny = root / "tiny-sdxl" / "refiner"
    if args.tiny and not target.exists():
        write_sdxl_file(tiny, target.with_suffix(".partial"), refiner=True)
        target.with_suffix(".partial").rename(target)
    if target.exists():
        return target, str(tiny) if args.tiny else ""
    import diffusers

    config = json.loads((Path(__file__).resolve().parents[1] / "nodegraph" / "models" / "single_file" / "configs" /
                         "sdxl_refiner.json").read_text())["unet"]
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel.from_config(config)
    names = unet_to_ldm({k: k for k in unet.state_dict()}, config["layers_per_block"])  # SGM name → diffusers'
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    vae_levels = len(json.loads((base / "vae" / "config.json").read_text())["block_out_channels"])
    parts = vae_to_ldm(load_file(base / "vae" / "diffusion_pytorch_model.safetensors"), vae_levels)
    te2 = load_file(base / "text_encoder_2" / "model.safetensors")
    parts.update(open_clip_to_ldm(te2, "conditioner.embedders.0.model.", te2["text_projection.weight"].t()))
    kinds = {torch.bfloat16: "BF16", torch.float32: "F32"}
    layout = {**{k: ("BF16", shapes[v]) for k, v in names.items()},
              **{k: (kinds[v.dtype], tuple(v.shape)) for k, v in parts.items()}}
    generator = torch.Generator().manual_seed(7)

    def make(name: str, kind: str, shape: tuple[int, ...]):
        if name in parts:
            return parts[name]
        if "norm" in names[name] and names[name].endswith("weight"):
            return torch.ones(shape, dtype=torch.bfloat16)
        return (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)

    print(f"writing the SDXL-refiner-size single file {target} (once) …", flush=True)
    write_streamed(target, layout, make)
    return target, ""


def refiner_workflow_json(args, prompt: str, negative: str, cfg: float) -> str:
    """sdxl_simple_example as comfyui-workflow-templates 0.1.95 ships it (API form) on checkpoints/model.safetensors
    and refiner.safetensors, at the benchmark's size: `steps` in all, the base's KSamplerAdvanced to steps // 2,
    the refiner's from there; seed 5 (the twin's)."""
    import json

    from nodegraph.comfy.reader import read_workflow
    from tests.comfy.templates import template

    api = read_workflow(template("sdxl_simple_example")).api
    switch = args.steps // 2
    values = {"4": {"ckpt_name": "model.safetensors"}, "12": {"ckpt_name": "refiner.safetensors"},
              "5": {"width": args.size, "height": args.size},
              "10": {"steps": args.steps, "end_at_step": switch, "noise_seed": 5, "cfg": cfg},
              "11": {"steps": args.steps, "start_at_step": switch, "cfg": cfg},
              "6": {"text": prompt}, "15": {"text": prompt}, "7": {"text": negative}, "16": {"text": negative}}
    for node_id, inputs in values.items():
        api[node_id]["inputs"].update(inputs)
    return json.dumps(api)
