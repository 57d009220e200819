"""ComfyUI's Flux.1 dev split-file template (`comfyui-workflow-templates-json`'s flux_dev_full_text_to_image:
UNETLoader, DualCLIPLoader type flux, VAELoader ae.safetensors, EmptySD3LatentImage, KSampler euler/simple cfg 1,
ConditioningZeroOut) runs from its own JSON on tiny random split files, with a tiny Flux folder as `config`.

ComfyUI's Flux rules (comfy/supported_models.py, comfy/model_sampling.py `ModelSamplingFlux`,
comfy/text_encoders/flux.py, comfy/model_base.py `Flux.extra_conds`): μ is 1.15 at every size (diffusers computes
it from the image's token count: the test's scheduler is given base_shift = max_shift = 1.15 to match), T5 is
padded to at least 256 tokens (the pipeline's max_sequence_length 256), the guidance is 3.5 with no FluxGuidance,
and cfg 1 skips the negative. The tiny folder has ComfyUI's 16 latent channels (its VAE shrinks 4×: the template at
64×64 is the pipeline's 32×32).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import comfyui_workflow_templates_json as templates_json

TEMPLATE = Path(templates_json.__file__).parent / "templates" / "flux_dev_full_text_to_image.json"
PROMPT = "a red fox in fresh snow"


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory):
    """(tiny Flux.1-dev folder with 16 latent channels, ComfyUI models/ folder with the templates' file names); a
    schnell folder with the same text encoders and VAE beside the dev one."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(Path(__file__).parents[1] / "flow"))  # tests/flow's modules import each other by name
    import tiny_flux
    from test_flux_single_file import to_bfl
    from tests.models.single_file.ldm_layout import vae_to_ldm

    root = tmp_path_factory.mktemp("comfy-flux")
    parts = tiny_flux.build_components()
    parts["transformer"] = tiny_flux.perturb(FluxTransformer2DModel(**{**tiny_flux.TRANSFORMER, "in_channels": 64,
                                                                       "guidance_embeds": True}),
                                             41)
    parts["vae"] = tiny_flux.perturb(AutoencoderKL(**{**tiny_flux.VAE, "latent_channels": 16}), 42)
    parts["scheduler"] = FlowMatchEulerDiscreteScheduler(**{**tiny_flux.DEV_SCHEDULER, "base_shift": 1.15,
                                                            "max_shift": 1.15})
    folder = root / "tiny-flux-dev"
    FluxPipeline(**parts).save_pretrained(folder)
    schnell = dict(parts, scheduler=FlowMatchEulerDiscreteScheduler(**tiny_flux.SCHNELL_SCHEDULER),
                   transformer=tiny_flux.perturb(FluxTransformer2DModel(**{**tiny_flux.TRANSFORMER, "in_channels": 64,
                                                                           "guidance_embeds": False}), 43))
    FluxPipeline(**schnell).save_pretrained(root / "tiny-flux-schnell")  # the same text encoders and VAE
    models = root / "models"
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (models / sub).mkdir(parents=True)
    for variant in ("dev", "schnell"):
        save_file(to_bfl(load_file(root / f"tiny-flux-{variant}" / "transformer" / "diffusion_pytorch_model.safetensors")),
                  models / "diffusion_models" / f"flux1-{variant}.safetensors")
    clip = {f"text_model.{k}": v for k, v in load_file(folder / "text_encoder" / "model.safetensors").items()}
    save_file(clip, models / "text_encoders" / "clip_l.safetensors")
    save_file(load_file(folder / "text_encoder_2" / "model.safetensors"),
              models / "text_encoders" / "t5xxl_fp16.safetensors")
    vae = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae, 3, prefix="").items()}, models / "vae" / "ae.safetensors")
    return folder, models


def run(flux_models, out: Path, *sets: str, workflow: Path = TEMPLATE) -> np.ndarray:
    from nodegraph.cli import main

    args = [a for s in (f"config={flux_models[0]}", "194:48.width=64", "194:48.height=64", "194:50.steps=4",
                        f"194:49.text={PROMPT}", *sets) for a in ("--set", s)]
    assert main(["run", str(workflow), "--models", str(flux_models[1]), "--out", str(out), "-q", *args]) == 0
    (png,) = sorted(out.rglob("*.png"))
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def pipeline_image(folder, seed: int, guidance: float = 3.5, prompt: str = PROMPT, prompt_2=None) -> np.ndarray:
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(folder)
    out = pipe(prompt=prompt, prompt_2=prompt_2, height=32, width=32, num_inference_steps=4, guidance_scale=guidance,
               max_sequence_length=256, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    return np.round(out.images[0] * 255).astype(int)


def test_flux_dev_template_equals_the_diffusers_pipeline_with_comfyuis_flux_rules(flux_models, tmp_path):
    got = run(flux_models, tmp_path / "seed5", "194:50.seed=5")
    want = pipeline_image(flux_models[0], seed=5)
    assert got.shape == want.shape == (32, 32, 3)
    assert np.abs(got - want).max() <= 1
    assert np.abs(run(flux_models, tmp_path / "seed6", "194:50.seed=6") - want).max() > 8  # it sees the noise
    assert np.abs(pipeline_image(flux_models[0], seed=5, guidance=1.0) - want).max() > 4  # and the guidance


def test_flux_guidance_sets_the_prompts_guidance(flux_models, tmp_path):
    """FluxGuidance (comfy_extras/nodes_flux.py) between the prompt and the KSampler: the pipeline's guidance."""
    doc = json.loads(TEMPLATE.read_text())
    (subgraph,) = doc["definitions"]["subgraphs"]
    links = subgraph["links"]
    into_ksampler = next(link for link in links if link["target_id"] == 50 and link["target_slot"] == 1)
    guidance = {"id": 900, "type": "FluxGuidance", "mode": 0, "widgets_values": [2.0],
                "inputs": [{"name": "conditioning", "type": "CONDITIONING", "link": 901}],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [into_ksampler["id"]]}]}
    links.append({"id": 901, "origin_id": into_ksampler["origin_id"], "origin_slot": 0, "target_id": 900,
                  "target_slot": 0, "type": "CONDITIONING"})
    into_ksampler["origin_id"] = 900
    subgraph["nodes"].append(guidance)
    workflow = tmp_path / "flux_guidance.json"
    workflow.write_text(json.dumps(doc))
    got = run(flux_models, tmp_path / "out", "194:50.seed=5", workflow=workflow)
    assert np.abs(got - pipeline_image(flux_models[0], seed=5, guidance=2.0)).max() <= 1


def test_flux_template_refusals_name_the_node_and_what_to_do(flux_models):
    from safetensors.torch import load_file, save_file

    from nodegraph.comfy.command import apply_comfy_sets
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.models import ModelPaths
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import translate

    def translate_with(*sets):
        workflow = read_workflow(TEMPLATE)
        apply_comfy_sets(workflow.api, list(sets), str(TEMPLATE))
        return translate(workflow, ModelPaths([flux_models[1]]))

    models = flux_models[1] / "diffusion_models"
    state = load_file(models / "flux1-dev.safetensors")
    quantized = {**state, "img_in.comfy_quant": torch.zeros(3, dtype=torch.uint8)}  # scaled fp8 loads (tests/fp8)
    save_file(quantized, models / "flux1-dev_mixed.safetensors")
    with pytest.raises(ComfyError, match=r"flux1-dev_mixed.safetensors: a ComfyUI quantized export .* the bf16 file"):
        translate_with("194:46.unet_name=flux1-dev_mixed.safetensors")
    with pytest.raises(ComfyError, match=r"node 194:47 \(DualCLIPLoader\): type flux takes one CLIP-L file and one "
                                         r"T5-XXL file; both are clip_l files"):
        translate_with("194:47.clip_name2=clip_l.safetensors")
    with pytest.raises(ComfyError, match=r"node 194:47 \(DualCLIPLoader\): type 'sd3'"):
        translate_with("194:47.type=sd3")
    nodes = translate_with("194:49.text=a (red:1.2) fox").document["nodes"]  # weights: tests/comfy/test_flux_weights.py
    assert nodes["text194_49"]["weighted"] is True and nodes["text194_49_clip"]["prompt"] == "a red fox"
    assert translate_with("194:49.text=a \\(red\\) fox")  # escaped brackets are text


def test_flux_schnell_template_with_clip_text_encode_flux_equals_the_schnell_pipeline(flux_models, tmp_path):
    """flux_schnell_full_text_to_image: CLIPTextEncodeFlux's `clip_l` text to CLIP-L, `t5xxl` to T5 (the
    pipeline's prompt / prompt_2); schnell samples on ComfyUI's discrete flow with shift 1 (no guidance). Its own
    T5 text is weighted (`(like daisies, pink blooms)`: tests/comfy/test_flux_weights.py runs it as it ships); here
    plain texts."""
    from nodegraph.cli import main

    workflow = TEMPLATE.parent / "flux_schnell_full_text_to_image.json"
    sets = [f"config={flux_models[0].parent / 'tiny-flux-schnell'}", "27.width=64", "27.height=64", "31.seed=5",
            "41.clip_l=a red fox", "41.t5xxl=lighthouse at dusk watercolor"]
    out = tmp_path / "out"
    assert main(["run", str(workflow), "--models", str(flux_models[1]), "--out", str(out), "-q",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    got = np.asarray(Image.open(next(out.rglob("*.png"))).convert("RGB")).astype(int)
    want = pipeline_image(flux_models[0].parent / "tiny-flux-schnell", seed=5, prompt="a red fox",
                          prompt_2="lighthouse at dusk watercolor")
    assert np.abs(got - want).max() <= 1
    swapped = pipeline_image(flux_models[0].parent / "tiny-flux-schnell", seed=5, prompt="lighthouse at dusk watercolor",
                             prompt_2="a red fox")
    assert np.abs(swapped - want).max() > 4  # the two texts reach different encoders


def test_sampler_custom_advanced_with_basic_guider_equals_the_ksampler(flux_models, tmp_path):
    """The template's KSampler rewired as RandomNoise + BasicGuider + KSamplerSelect + BasicScheduler +
    SamplerCustomAdvanced (API format): the same image bit for bit; with DisableNoise the image changes."""
    from nodegraph.comfy.reader import read_workflow

    api = read_workflow(TEMPLATE).api
    ksampler = api.pop("194:50")["inputs"]
    api.update({
        "n": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "g": {"class_type": "BasicGuider", "inputs": {"model": ksampler["model"], "conditioning": ksampler["positive"]}},
        "s": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "b": {"class_type": "BasicScheduler", "inputs": {"model": ksampler["model"], "scheduler": "simple", "steps": 4,
                                                         "denoise": 1.0}},
        "c": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["n", 0], "guider": ["g", 0],
                                                                "sampler": ["s", 0], "sigmas": ["b", 0],
                                                                "latent_image": ksampler["latent_image"]}}})
    api["194:51"]["inputs"]["samples"] = ["c", 0]
    workflow = tmp_path / "custom_advanced.json"
    workflow.write_text(json.dumps(api))
    sets = ("config={}".format(flux_models[0]), "194:48.width=64", "194:48.height=64", f"194:49.text={PROMPT}")
    from nodegraph.cli import main

    def image(path, out):
        assert main(["run", str(path), "--models", str(flux_models[1]), "--out", str(out), "-q",
                     *[a for s in sets for a in ("--set", s)]]) == 0
        return np.asarray(Image.open(next(out.rglob("*.png"))).convert("RGB")).astype(int)

    got = image(workflow, tmp_path / "custom")
    assert np.array_equal(got, run(flux_models, tmp_path / "ksampler", "194:50.seed=5"))
    api["n"] = {"class_type": "DisableNoise", "inputs": {}}
    workflow.write_text(json.dumps(api))
    assert np.abs(image(workflow, tmp_path / "disabled") - got).max() > 8
