"""SDXL single files in ComfyUI workflows against diffusers' SDXL pipelines configured as ComfyUI samples.

ComfyUI's SDXL conditioning: both encoders' penultimate hidden states side by side, bigG's pooled embedding, and
size conditioning from the latent (8·h, 8·w, crop 0, 0, target 8·h, 8·w) — given to diffusers explicitly, since
the tiny VAE downsamples by 4, not 8. A refiner reads bigG alone, with size ids (8·h, 8·w, 0, 0) and ComfyUI's
aesthetic scores, 6 for the positive prompt and 2.5 for the negative (diffusers' defaults too).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from workflows import CFG, NEGATIVE, PROMPT, SEED, STEPS, api, run_cli


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@functools.cache
def _pipeline(folder, refiner=False):
    import diffusers

    cls = diffusers.StableDiffusionXLImg2ImgPipeline if refiner else diffusers.StableDiffusionXLPipeline
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    return pipe


def first_latents(pipe):
    """ComfyUI's first x: the seed's noise × √(1 + σmax²), given to diffusers pre-divided by its init sigma."""
    pipe.scheduler.set_timesteps(STEPS)
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    return noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)


def diffusers_sdxl(folder, comfy_sizes=True, lora=None, **call):
    pipe = _pipeline(folder)
    if lora:
        pipe.load_lora_weights(str(lora[0]), adapter_name="k")
        pipe.set_adapters(["k"], [lora[1]])
    try:
        sizes = dict(original_size=(64, 64), target_size=(64, 64)) if comfy_sizes else {}
        text = {} if "prompt_embeds" in call else {"prompt": call.pop("text_l", PROMPT), "negative_prompt": NEGATIVE}
        out = pipe(**text, num_inference_steps=STEPS, guidance_scale=CFG, height=32,
                   width=32, latents=first_latents(pipe), **sizes, **call)
    finally:
        if lora:
            pipe.unload_lora_weights()
    if call.get("output_type") == "latent":
        return out.images
    return (out.images[0] * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def sdxl_default_run(tmp_path_factory, sdxl_models):
    folder, models = sdxl_models
    return run_cli(tmp_path_factory.mktemp("sdxl"), api(n4_ckpt_name="tiny-sdxl.safetensors"), models, folder)[0]


def test_sdxl_default_workflow_matches_diffusers_sdxl_configured_as_comfyui(sdxl_default_run, sdxl_models):
    folder, _ = sdxl_models
    theirs = diffusers_sdxl(folder, output_type="np")
    assert sdxl_default_run.shape == theirs.shape == (32, 32, 3)  # 64 px → 8×8 latent → the 4× VAE's 32 px
    assert max_diff(sdxl_default_run, theirs) <= 1
    # sensitivity: diffusers' own size conditioning (32 px from its VAE) is another image
    assert max_diff(sdxl_default_run, diffusers_sdxl(folder, comfy_sizes=False, output_type="np")) > 1


def with_clip_node(doc, node: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["10"] = node
    doc["6"]["inputs"]["clip"] = doc["7"]["inputs"]["clip"] = ["10", 1 if node["class_type"] == "LoraLoader" else 0]
    if node["class_type"] == "LoraLoader":
        doc["3"]["inputs"]["model"] = ["10", 0]
    return doc


def test_clip_set_last_layer_on_sdxl_is_diffusers_sdxl_clip_skip(tmp_path, sdxl_models, sdxl_default_run):
    # ComfyUI counts from the last layer (−1) of both encoders, unnormed; SDXL's default is −2, so −3 is
    # diffusers' clip_skip 1 (hidden_states[-(clip_skip + 2)] of each encoder)
    folder, models = sdxl_models
    doc = with_clip_node(api(n4_ckpt_name="tiny-sdxl.safetensors"), {
        "class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -3, "clip": ["4", 1]}})
    ours = run_cli(tmp_path, doc, models, folder)[0]
    assert max_diff(ours, diffusers_sdxl(folder, **layer_embeddings(folder, -3), output_type="np")) <= 1
    assert max_diff(ours, sdxl_default_run) > 8


def layer_embeddings(folder, index: int) -> dict:
    """Both prompts encoded by transformers' CLIPs at hidden_states[index] (diffusers' SDXL pipeline applies its
    clip_skip to the positive prompt only), bigG's projection as the pooled embedding."""
    pipe = _pipeline(folder)
    out = {}
    for name, text in (("prompt_embeds", PROMPT), ("negative_prompt_embeds", NEGATIVE)):
        states = []
        for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            ids = tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
            with torch.no_grad():
                result = encoder(ids, output_hidden_states=True)
            states.append(result.hidden_states[index])
        out[name] = torch.cat(states, dim=-1)
        out[name.replace("prompt_embeds", "pooled_prompt_embeds")] = result[0]
    return out


def test_clip_set_last_layer_minus_2_on_sdxl_is_its_default(tmp_path, sdxl_models, sdxl_default_run):
    folder, models = sdxl_models
    doc = with_clip_node(api(n4_ckpt_name="tiny-sdxl.safetensors"), {
        "class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["4", 1]}})
    assert max_diff(run_cli(tmp_path, doc, models, folder)[0], sdxl_default_run) == 0


def test_lora_loader_on_sdxl_matches_diffusers_load_lora_weights(tmp_path, sdxl_models, sdxl_default_run):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "models" / "adapters"))
    from lora_files import sdxl_targets, write_kohya_sdxl

    folder, models = sdxl_models
    (models / "loras").mkdir(exist_ok=True)
    lora = write_kohya_sdxl(models / "loras" / "tiny-sdxl-kohya.safetensors", sdxl_targets(folder), seed=11)
    doc = with_clip_node(api(n4_ckpt_name="tiny-sdxl.safetensors"), {"class_type": "LoraLoader", "inputs": {
        "lora_name": "tiny-sdxl-kohya.safetensors", "strength_model": 0.8, "strength_clip": 0.8,
        "model": ["4", 0], "clip": ["4", 1]}})
    ours = run_cli(tmp_path, doc, models, folder)[0]
    assert max_diff(ours, diffusers_sdxl(folder, lora=(lora, 0.8), output_type="np")) <= 1
    assert max_diff(ours, sdxl_default_run) > 8  # the LoRA (UNet and both text encoders) really acts


def test_clip_text_encode_sdxl_sets_its_texts_and_size_ids(tmp_path, sdxl_models, sdxl_default_run):
    # bigG reads text_g, CLIP-L text_l; ids (height, width, crop_h, crop_w, target_height, target_width) are the
    # node's for its prompt, the latent's for the plain negative: diffusers' prompt / prompt_2 and size arguments
    folder, models = sdxl_models
    doc = api(n4_ckpt_name="tiny-sdxl.safetensors")
    doc["6"] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {
        "width": 96, "height": 80, "crop_w": 8, "crop_h": 16, "target_width": 88, "target_height": 72,
        "text_g": PROMPT, "text_l": "a drawing of a dog", "clip": ["4", 1]}}
    ours = run_cli(tmp_path, doc, models, folder)[0]
    theirs = diffusers_sdxl(folder, comfy_sizes=False, prompt_2=PROMPT, original_size=(80, 96),
                            crops_coords_top_left=(16, 8), target_size=(72, 88), negative_original_size=(64, 64),
                            negative_target_size=(64, 64), output_type="np", text_l="a drawing of a dog")
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, sdxl_default_run) > 8


def refiner_workflow(refiner_text=None) -> dict:
    """KSamplerAdvanced on the base for steps 0–2 (leftover noise), then on the refiner for 2–4, as ComfyUI's
    SDXL refiner example does; `refiner_text(text, positive)` replaces the refiner's CLIPTextEncode nodes."""
    doc = api(n4_ckpt_name="tiny-sdxl.safetensors")
    common = {"noise_seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": "euler", "scheduler": "normal"}
    doc["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "enable", "start_at_step": 0, "end_at_step": 2, "return_with_leftover_noise": "enable",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
    doc["12"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sdxl-refiner.safetensors"}}
    for node_id, text, positive in (("13", PROMPT, True), ("14", NEGATIVE, False)):
        doc[node_id] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["12", 1]}}
        if refiner_text:
            doc[node_id] = refiner_text(text, positive)
    doc["15"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "disable", "start_at_step": 2, "end_at_step": 10000,
        "return_with_leftover_noise": "disable", "model": ["12", 0], "positive": ["13", 0], "negative": ["14", 0],
        "latent_image": ["3", 0]}}
    doc["8"]["inputs"].update(samples=["15", 0], vae=["12", 2])
    return doc


def run_base_and_refiner(tmp_path, doc, sdxl_models, sdxl_refiner):
    import json

    from PIL import Image

    from nodegraph.cli import main

    folder, models = sdxl_models
    (tmp_path / "w.json").write_text(json.dumps(doc))
    code = main(["run", str(tmp_path / "w.json"), "--models", str(models), "--out", str(tmp_path / "out"), "-q",
                 "--set", f"config_4={folder}", "--set", f"config_12={sdxl_refiner}"])
    assert code == 0
    return np.asarray(Image.open(next((tmp_path / "out").glob("*.png"))).convert("RGB"))


def diffusers_refined(sdxl_models, sdxl_refiner, **call):
    """diffusers: the base with denoising_end 0.5 → the refiner with denoising_start 0.5."""
    latents = diffusers_sdxl(sdxl_models[0], denoising_end=0.5, output_type="latent")
    out = _pipeline(sdxl_refiner, refiner=True)(PROMPT, negative_prompt=NEGATIVE, image=latents,
                                                num_inference_steps=STEPS, guidance_scale=CFG, denoising_start=0.5,
                                                output_type="np", **call)
    return (out.images[0] * 255).round().astype(np.uint8)


def test_clip_text_encode_sdxl_refiner_sets_score_and_size(tmp_path, sdxl_models, sdxl_refiner):
    # the refiner alone over all 4 steps; diffusers' refiner from ComfyUI's first x with denoising_start ≈ 0
    # (every timestep, no noise added), aesthetic_score / original_size and their negative counterparts
    _, models = sdxl_models
    doc = api(n4_ckpt_name="tiny-sdxl-refiner.safetensors")
    for node_id, text, score, size in (("6", PROMPT, 9.0, 128), ("7", NEGATIVE, 1.0, 48)):
        doc[node_id] = {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
            "ascore": score, "width": size, "height": size, "text": text, "clip": ["4", 1]}}
    ours = run_cli(tmp_path, doc, models, sdxl_refiner)[0]
    refiner = _pipeline(sdxl_refiner, refiner=True)
    start = first_latents(refiner) * float(refiner.scheduler.init_noise_sigma)  # noise · √(1 + σmax²)

    def theirs(**ids):
        out = refiner(PROMPT, negative_prompt=NEGATIVE, image=start, num_inference_steps=STEPS, guidance_scale=CFG,
                      denoising_start=1e-6, output_type="np", **ids)
        return (out.images[0] * 255).round().astype(np.uint8)

    assert max_diff(ours, theirs(original_size=(128, 128), negative_original_size=(48, 48), aesthetic_score=9.0,
                                 negative_aesthetic_score=1.0)) <= 1
    # sensitive: the ids a plain CLIPTextEncode gives (the latent's 64 px, scores 6 and 2.5) are another image
    assert max_diff(ours, theirs(original_size=(64, 64))) > 8


def test_base_then_refiner_matches_diffusers_ensemble_of_experts(tmp_path, sdxl_models, sdxl_refiner):
    ours = run_base_and_refiner(tmp_path, refiner_workflow(), sdxl_models, sdxl_refiner)
    # the refiner's plain CLIPTextEncode: size ids from the latent (64 px), ComfyUI's scores 6 and 2.5
    assert max_diff(ours, diffusers_refined(sdxl_models, sdxl_refiner, original_size=(64, 64))) <= 1
    # sensitive: the refiner's steps matter (the base alone is another image), and so do its size and score ids
    assert max_diff(ours, diffusers_sdxl(sdxl_models[0], output_type="np")) > 8
    other = diffusers_refined(sdxl_models, sdxl_refiner, original_size=(32, 32), aesthetic_score=2.5,
                              negative_aesthetic_score=6.0)
    assert max_diff(ours, other) > 4
