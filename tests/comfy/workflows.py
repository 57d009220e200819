"""ComfyUI workflows for the tests, written as ComfyUI saves them (API and UI formats of the same graph)."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

PROMPT, NEGATIVE, SEED, STEPS, CFG = "a photo of a cat", "blurry", 5, 4, 7.5
# ComfyUI's default graph (the one a fresh editor shows), sized for the tiny model: 64 px → an 8×8 latent.
DEFAULT_API = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 5, "steps": 4, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd1.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


# DEFAULT_API as a user would write it in nodegraph directly: the same nodes, the step inline instead of the
# included step graph, no `history` state. Its defaults are DEFAULT_API's values; bench_comfy.py sets others.
HAND_WRITTEN = """
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
  clip: {type: LoadCLIP, model: $inputs.model, config: $inputs.config}
  vae: {type: LoadVAE, model: $inputs.model, config: $inputs.config}
  pos: {type: ComfyTextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer, text: $inputs.prompt}
  neg: {type: ComfyTextEncode, text_encoder: $clip.text_encoder, tokenizer: $clip.tokenizer, text: $inputs.negative}
  empty: {type: ComfyEmptyLatent, width: $inputs.size, height: $inputs.size}
  sigmas: {type: ComfySigmas, scheduler: normal, steps: $inputs.steps}
  noise: {type: ComfyNoise, latents: $empty.latents, sigmas: $sigmas.sigmas, seed: 5}
  sample:
    type: repeat
    over: $sigmas.steps
    state: {x: $noise.latents}
    nodes:
      x0: {type: ComfyDenoise, unet: $unet.unet, latents: $state.x, sigmas: $sigmas.sigmas, index: $loop.item,
           positive: $pos.embeddings, negative: $neg.embeddings, cfg: $inputs.cfg}
      euler: {type: ComfySamplerStep, sampler: euler, latents: $state.x, denoised: $x0.denoised,
              sigmas: $sigmas.sigmas, index: $loop.item}
    next: {x: $euler.latents}
  decode: {type: VAEDecode, vae: $vae.vae, latents: $sample.x}
outputs:
  image: $decode.image
"""


def api(**changes) -> dict:
    """DEFAULT_API with `{"3.seed": 6, ...}`-style changes (given as keyword `n3_seed=6` → node 3 input seed)."""
    doc = copy.deepcopy(DEFAULT_API)
    for key, value in changes.items():
        node_id, name = key[1:].split("_", 1)
        doc[node_id]["inputs"][name] = value
    return doc


def default_ui() -> dict:
    """The same graph in the editor's format, with a Reroute on the VAE, a Note, and the seed from a PrimitiveNode."""
    def slot(name, type_, link, widget=None):
        s = {"name": name, "type": type_, "link": link}
        if widget:
            s["widget"] = {"name": widget}
        return s

    nodes = [
        {"id": 3, "type": "KSampler", "mode": 0,
         "inputs": [slot("model", "MODEL", 1), slot("positive", "CONDITIONING", 4),
                    slot("negative", "CONDITIONING", 6), slot("latent_image", "LATENT", 2),
                    slot("seed", "INT", 20, widget="seed")],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7]}],
         "widgets_values": [123, "randomize", 4, 7.5, "euler", "normal", 1]},
        {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "inputs": [],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]},
                     {"name": "CLIP", "type": "CLIP", "links": [3, 5]},
                     {"name": "VAE", "type": "VAE", "links": [10]}],
         "widgets_values": ["tiny-sd1.safetensors"]},
        {"id": 5, "type": "EmptyLatentImage", "mode": 0, "inputs": [],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2]}], "widgets_values": [64, 64, 1]},
        {"id": 6, "type": "CLIPTextEncode", "mode": 0, "inputs": [slot("clip", "CLIP", 3)],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4]}],
         "widgets_values": ["a photo of a cat"]},
        {"id": 7, "type": "CLIPTextEncode", "mode": 0, "inputs": [slot("clip", "CLIP", 5)],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6]}], "widgets_values": ["blurry"]},
        {"id": 8, "type": "VAEDecode", "mode": 0, "inputs": [slot("samples", "LATENT", 7), slot("vae", "VAE", 11)],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9]}]},
        {"id": 9, "type": "SaveImage", "mode": 0, "inputs": [slot("images", "IMAGE", 9)], "outputs": [],
         "widgets_values": ["ComfyUI"]},
        {"id": 10, "type": "Reroute", "mode": 0, "inputs": [slot("", "*", 10)],
         "outputs": [{"name": "", "type": "VAE", "links": [11]}]},
        {"id": 11, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["the default graph"]},
        {"id": 12, "type": "PrimitiveNode", "mode": 0, "inputs": [],
         "outputs": [{"name": "INT", "type": "INT", "links": [20], "widget": {"name": "seed"}}],
         "widgets_values": [5, "fixed"]},
    ]
    links = [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
             [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"],
             [7, 3, 0, 8, 0, "LATENT"], [9, 8, 0, 9, 0, "IMAGE"], [10, 4, 2, 10, 0, "VAE"],
             [11, 10, 0, 8, 1, "VAE"], [20, 12, 0, 3, 4, "INT"]]
    return {"last_node_id": 12, "last_link_id": 20, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def run_cli(folder: Path, workflow, models_dir, sd1_folder, *extra, name: str = "workflow.json"):
    """`nodegraph run` on `workflow` (a dict written to folder/name, or a path) → (pixels (H, W, 3), PNG path)."""
    import numpy as np
    from PIL import Image

    from nodegraph.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    source = workflow if isinstance(workflow, Path) else folder / name
    if not isinstance(workflow, Path):
        source.write_text(json.dumps(workflow))
    out = folder / "out"
    code = main(["run", str(source), "--models", str(models_dir), "--out", str(out), "-q",
                 "--set", f"config={sd1_folder}", *extra])
    assert code == 0
    (png,) = sorted(out.glob("*.png"))
    return np.asarray(Image.open(png).convert("RGB")), png


@functools.cache
def _pipeline(folder):
    """(pipeline, its own scheduler config), loaded once per folder: each caller sets its scheduler from that
    config; LoRA callers load their own pipeline."""
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    return pipe, pipe.scheduler.config


def diffusers_comfy_image(folder, scheduler_cls, seed=SEED, clip_skip=None, loras=None, steps=STEPS,
                          **scheduler_config):
    """diffusers' StableDiffusionPipeline on `folder`, configured as ComfyUI samples (comfyui-facts.md)."""
    import diffusers
    import numpy as np
    import torch

    if loras:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
        config = pipe.scheduler.config
    else:
        pipe, config = _pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    for name, (path, scale) in (loras or {}).items():
        pipe.load_lora_weights(str(path), adapter_name=name)
    if loras:
        pipe.set_adapters(list(loras), [scale for _, scale in loras.values()])
    pipe.scheduler = scheduler_cls.from_config(config, **scheduler_config)
    pipe.scheduler.set_timesteps(steps)
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(seed))
    # ComfyUI's first x is noise·√(1 + σmax²) in σ-space; the pipeline multiplies given latents by
    # init_noise_sigma. DPM-Solver works on x/√(1 + σ²) (init_noise_sigma 1), where that same x is the plain noise.
    vp = isinstance(pipe.scheduler, (diffusers.DPMSolverMultistepScheduler, diffusers.UniPCMultistepScheduler))
    latents = noise if vp else noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)
    text = {"prompt": PROMPT, "negative_prompt": NEGATIVE}
    if clip_skip:  # diffusers' clip_skip rule, written out (its pipeline reaches for `text_encoder.text_model`,
        # which this transformers version no longer has): final_layer_norm(hidden_states[-(clip_skip + 1)])
        def embed(prompt):
            ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
            with torch.no_grad():
                states = pipe.text_encoder(ids, output_hidden_states=True).hidden_states
                return pipe.text_encoder.final_layer_norm(states[-(clip_skip + 1)])

        text = {"prompt_embeds": embed(PROMPT), "negative_prompt_embeds": embed(NEGATIVE)}
    out = pipe(**text, num_inference_steps=steps, guidance_scale=CFG, height=16, width=16, latents=latents,
               generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    return (out.images[0] * 255).round().astype(np.uint8)
