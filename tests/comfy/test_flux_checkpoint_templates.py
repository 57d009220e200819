"""ComfyUI's Flux.1 all-in-one checkpoint templates run from their own JSON: flux_schnell
(`comfyui-workflow-templates-json`: CheckpointLoaderSimple flux1-schnell-fp8.safetensors, CLIPTextEncode,
EmptySD3LatentImage, KSampler euler/simple cfg 1) and flux_dev_checkpoint_example (`comfyui-workflow-templates`
0.1.95: the same with FluxGuidance), on tiny random all-in-one files (`model.diffusion_model.` BFL transformer,
`text_encoders.clip_l/t5xxl.transformer.`, `first_stage_model.` VAE) in ComfyUI's checkpoints/ folder, configured
from the tiny Flux folders of tests/comfy/test_flux_templates.py. ComfyUI's rules are those of the split-file
templates (that module's docstring); ModelSamplingFlux's μ from the image size is checked against diffusers'
calculate_shift on the same line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_flux_templates import PROMPT, flux_models, pipeline_image  # noqa: F401  (a module fixture)

import comfyui_workflow_templates
import comfyui_workflow_templates_json as templates_json

SCHNELL = Path(templates_json.__file__).parent / "templates" / "flux_schnell.json"
DEV = Path(comfyui_workflow_templates.get_templates_path()) / "flux_dev_checkpoint_example.json"


@pytest.fixture(scope="module")
def checkpoints(flux_models):
    """models/checkpoints/flux1-{schnell,dev}-fp8.safetensors: each tiny folder in ComfyUI's all-in-one layout."""
    from safetensors.torch import load_file, save_file
    from test_flux_single_file import to_bfl

    from tests.models.single_file.ldm_layout import vae_to_ldm

    folder, models = flux_models
    (models / "checkpoints").mkdir(exist_ok=True)
    for variant, source in (("schnell", folder.parent / "tiny-flux-schnell"), ("dev", folder)):
        clip = {f"text_model.{k}": v for k, v in load_file(source / "text_encoder" / "model.safetensors").items()}
        state = {**to_bfl(load_file(source / "transformer" / "diffusion_pytorch_model.safetensors"),
                          "model.diffusion_model."),
                 **{f"text_encoders.clip_l.transformer.{k}": v for k, v in clip.items()},
                 **{f"text_encoders.t5xxl.transformer.{k}": v
                    for k, v in load_file(source / "text_encoder_2" / "model.safetensors").items()},
                 **vae_to_ldm(load_file(source / "vae" / "diffusion_pytorch_model.safetensors"), 3)}
        save_file({k: v.contiguous() for k, v in state.items()},
                  models / "checkpoints" / f"flux1-{variant}-fp8.safetensors")
    return flux_models


@pytest.fixture(scope="module")
def wants(checkpoints):
    """The pipelines' images at seed 5 (schnell; dev with guidance 3.5), shared by the tests below."""
    folder = checkpoints[0]
    return {"schnell": pipeline_image(folder.parent / "tiny-flux-schnell", seed=5),
            "dev": pipeline_image(folder, seed=5)}


def run(models: Path, config: Path, workflow: Path, out: Path, *sets: str) -> np.ndarray:
    from nodegraph.cli import main

    args = [a for s in (f"config={config}", *sets) for a in ("--set", s)]
    assert main(["run", str(workflow), "--models", str(models), "--out", str(out), "-q", *args]) == 0
    (png,) = sorted(out.rglob("*.png"))
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def test_flux_schnell_checkpoint_template_equals_the_schnell_pipeline(checkpoints, wants, tmp_path):
    from nodegraph.comfy.reader import read_workflow

    folder, models = checkpoints
    schnell = folder.parent / "tiny-flux-schnell"
    sets = ("27.width=64", "27.height=64", f"6.text={PROMPT}")
    got = run(models, schnell, SCHNELL, tmp_path / "seed5", *sets, "31.seed=5")
    want = wants["schnell"]
    assert got.shape == want.shape == (32, 32, 3)
    assert np.abs(got - want).max() <= 1
    assert np.abs(run(models, schnell, SCHNELL, tmp_path / "seed6", *sets, "31.seed=6") - want).max() > 8
    api = read_workflow(SCHNELL).api  # a VAELoader of vae/ae.safetensors (the same weights) beside the checkpoint
    api["v"] = {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}
    api["8"]["inputs"]["vae"] = ["v", 0]
    (tmp_path / "vae.json").write_text(json.dumps(api))
    assert np.array_equal(run(models, schnell, tmp_path / "vae.json", tmp_path / "vae", *sets, "31.seed=5"), got)
    assert np.abs(pipeline_image(schnell, seed=5, prompt="lighthouse at dusk") - want).max() > 4  # the prompt


def test_flux_dev_checkpoint_template_with_flux_guidance_equals_the_dev_pipeline(checkpoints, wants, tmp_path):
    folder, models = checkpoints
    sets = ("27.width=64", "27.height=64", f"6.text={PROMPT}", "31.seed=5", "31.steps=4", "35.guidance=2.0")
    got = run(models, folder, DEV, tmp_path / "out", *sets)
    assert np.abs(got - pipeline_image(folder, seed=5, guidance=2.0)).max() <= 1
    assert np.abs(got - wants["dev"]).max() > 4  # FluxGuidance reaches it (3.5 would be another image)


def test_model_sampling_flux_sets_mu_from_the_image_size(checkpoints, wants, tmp_path):
    """ModelSamplingFlux between the checkpoint and the KSampler (API form): μ = calculate_shift of the image's
    packed tokens with its base/max shift, which the pipeline computes itself from a scheduler given those."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from nodegraph.comfy.reader import read_workflow

    folder, models = checkpoints
    api = read_workflow(DEV).api
    api["m"] = {"class_type": "ModelSamplingFlux", "inputs": {"model": ["30", 0], "max_shift": 2.0,
                                                              "base_shift": 0.3, "width": 64, "height": 64}}
    api["31"]["inputs"]["model"] = ["m", 0]
    workflow = tmp_path / "sampling_flux.json"
    workflow.write_text(json.dumps(api))
    got = run(models, folder, workflow, tmp_path / "out", "27.width=64", "27.height=64", f"6.text={PROMPT}",
              "31.seed=5", "31.steps=4")
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(  # ComfyUI's line: 256 → base, 4096 → max
        pipe.scheduler.config, base_shift=0.3, max_shift=2.0, base_image_seq_len=256, max_image_seq_len=4096)
    out = pipe(prompt=PROMPT, height=32, width=32, num_inference_steps=4, guidance_scale=3.5, max_sequence_length=256,
               generator=torch.Generator("cpu").manual_seed(5), output_type="np")
    want = np.round(out.images[0] * 255).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - wants["dev"]).max() > 4  # μ 1.15 would be another image


def test_lora_loader_on_the_schnell_checkpoint_equals_the_pipeline_with_the_lora(checkpoints, wants, tmp_path):
    """LoraLoader (strengths 0.8) with a diffusers/peft LoRA (transformer + CLIP-L layers, tests/flow/
    test_flux_lora.py) equals FluxPipeline.load_lora_weights at joint_attention_kwargs scale 0.8."""
    from diffusers import FluxPipeline
    from test_flux_lora import peft_file

    from nodegraph.comfy.reader import read_workflow

    folder, models = checkpoints
    schnell = folder.parent / "tiny-flux-schnell"
    (models / "loras").mkdir(exist_ok=True)
    lora = peft_file(models / "loras" / "flux_lora.safetensors")
    api = read_workflow(SCHNELL).api
    api["l"] = {"class_type": "LoraLoader", "inputs": {"model": ["30", 0], "clip": ["30", 1], "strength_model": 0.8,
                                                       "lora_name": "flux_lora.safetensors", "strength_clip": 0.8}}
    api["31"]["inputs"]["model"] = ["l", 0]
    for node in ("6", "33"):
        api[node]["inputs"]["clip"] = ["l", 1]
    workflow = tmp_path / "lora.json"
    workflow.write_text(json.dumps(api))
    got = run(models, schnell, workflow, tmp_path / "out", "27.width=64", "27.height=64", f"6.text={PROMPT}",
              "31.seed=5")
    pipe = FluxPipeline.from_pretrained(schnell)
    pipe.load_lora_weights(str(lora))
    out = pipe(prompt=PROMPT, height=32, width=32, num_inference_steps=4, max_sequence_length=256,
               joint_attention_kwargs={"scale": 0.8}, generator=torch.Generator("cpu").manual_seed(5), output_type="np")
    want = np.round(out.images[0] * 255).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - wants["schnell"]).max() > 4  # the LoRA moves the image
