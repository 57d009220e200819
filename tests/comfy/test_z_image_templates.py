"""ComfyUI's Z-Image templates (`comfyui-workflow-templates-json`'s image_z_image_turbo and image_z_image) run from
their own JSON on tiny random split files in ComfyUI's layout (diffusion_models/, text_encoders/, vae/ae.safetensors),
with the tiny Z-Image folder as `config` (tokenizer and configs).

With `euler` the Turbo template equals diffusers' ZImagePipeline (guidance 0: ComfyUI's cfg 1 skips the negative);
the base template's cfg 4 over an empty negative equals the pipeline's guidance_scale 3 (ComfyUI mixes x₀ as
neg + cfg·(pos − neg), Z-Image's pipeline as pos + g·(pos − neg)). The templates' own `res_multistep` is checked
against ComfyUI's arithmetic written out here (comfy/k_diffusion/sampling.py `res_multistep`, eta 0; the "simple"
schedule over ModelSamplingDiscreteFlow's shifted table) around diffusers' transformer, encoder and VAE.

Step counts divide 1000, so that ComfyUI's "simple" σ (table entries every 1000/steps) are the pipeline's
linspace(1, 1/n, n) shifted (with 3 steps ComfyUI takes t = 0.667 and 0.334, not 2/3 and 1/3).
The tiny VAE shrinks 4× (ComfyUI's empty latent is always width/8): a template at 64×96 has the pipeline's latent
at 32×48 pixels, and both decode to 32×48.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import comfyui_workflow_templates_json as templates_json

TEMPLATES = Path(templates_json.__file__).parent / "templates"
TURBO, BASE = TEMPLATES / "image_z_image_turbo.json", TEMPLATES / "image_z_image.json"


@pytest.fixture(scope="module")
def z_models(tmp_path_factory):
    """(tiny Z-Image folder, ComfyUI models/ folder with the template's file names)."""
    from safetensors.torch import load_file, save_file

    from tests.flow.test_z_image_single_file import original_layout
    from tests.flow.tiny_z_image import save_tiny_z_image
    from tests.models.single_file.ldm_layout import vae_to_ldm

    root = tmp_path_factory.mktemp("comfy-z")
    folder = save_tiny_z_image(root / "tiny-z-image")
    models = root / "models"
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (models / sub).mkdir(parents=True)
    transformer = original_layout(load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors"), "")
    for name in ("z_image_turbo_bf16", "z_image_bf16"):  # fp32 under the templates' names
        save_file(transformer, models / "diffusion_models" / f"{name}.safetensors")
    save_file(load_file(folder / "text_encoder" / "model.safetensors"), models / "text_encoders" / "qwen_3_4b.safetensors")
    vae = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae, 3, prefix="").items()}, models / "vae" / "ae.safetensors")
    return folder, models


@pytest.fixture(scope="module")
def pipe(z_models):
    from diffusers import ZImagePipeline

    return ZImagePipeline.from_pretrained(z_models[0])


def run(workflow: Path, z_models, out: Path, *sets: str) -> np.ndarray:
    from nodegraph.cli import main

    args = [a for s in (f"config={z_models[0]}", *sets) for a in ("--set", s)]
    assert main(["run", str(workflow), "--models", str(z_models[1]), "--out", str(out), "-q", *args]) == 0
    (png,) = sorted(out.rglob("*.png"))
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def turbo(z_models, out, sampler: str, seed: int = 5) -> np.ndarray:
    return run(TURBO, z_models, out, "57:13.width=64", "57:13.height=96", "57:3.steps=4", f"57:3.seed={seed}",
               f"57:3.sampler_name={sampler}")


def prompt_of(workflow: Path, node: str) -> str:
    from nodegraph.comfy.reader import read_workflow

    return read_workflow(workflow).api[node]["inputs"]["text"]


def pipeline_image(pipe, prompt, steps, seed, guidance=0.0, negative=None, size=None) -> np.ndarray:
    # ComfyUI never cuts a Qwen3 prompt; the base template's is 733 tokens for the tiny tokenizer (pipeline: 512)
    out = pipe(prompt=prompt, negative_prompt=negative, height=size or 48, width=size or 32, num_inference_steps=steps,
               guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(seed), output_type="np",
               max_sequence_length=1024)
    return np.round(out.images[0] * 255).astype(int)


@pytest.fixture(scope="module")
def turbo_euler(z_models, tmp_path_factory) -> np.ndarray:
    return turbo(z_models, tmp_path_factory.mktemp("euler"), "euler")


def test_z_image_turbo_template_with_euler_equals_the_diffusers_pipeline(z_models, pipe, turbo_euler, tmp_path):
    got = turbo_euler
    want = pipeline_image(pipe, prompt_of(TURBO, "57:27"), steps=4, seed=5)
    assert got.shape == want.shape == (48, 32, 3)
    assert np.abs(got - want).max() <= 1
    other_seed = turbo(z_models, tmp_path / "seed6", "euler", seed=6)
    assert np.abs(other_seed - want).max() > 8  # the comparison sees the noise


def comfy_simple_sigmas(steps: int, shift: float) -> list[float]:
    """ComfyUI's "simple" scheduler over ModelSamplingDiscreteFlow(shift, multiplier 1): the table σ(k/1000) for
    k = 1…1000, float32, picked every 1000/steps entries from the top, then 0."""
    u = torch.arange(1, 1001, 1) / 1000
    table = shift * u / (1 + (shift - 1) * u)
    return [float(table[-(1 + int(x * 1000 / steps))]) for x in range(steps)] + [0.0]


def test_z_image_turbo_template_runs_res_multistep_as_comfyui(z_models, pipe, turbo_euler, tmp_path):
    got = turbo(z_models, tmp_path / "res", "res_multistep")
    (caption,) = pipe.encode_prompt(prompt_of(TURBO, "57:27"), do_classifier_free_guidance=False)[0]
    sigmas = comfy_simple_sigmas(4, shift=3.0)
    x = torch.randn((1, 16, 12, 8), generator=torch.Generator("cpu").manual_seed(5))  # σ₀ = 1: x = noise
    old = None
    for i in range(4):
        s, s_next = sigmas[i], sigmas[i + 1]
        with torch.no_grad():  # NextDiT at t = 1 − σ returns −v; x₀ = x − σ·v
            out = pipe.transformer([x[0].unsqueeze(1)], torch.tensor([1 - s]), [caption], return_dict=False)[0][0]
        x0 = x + out.squeeze(1)[None] * s
        if old is None or s_next == 0:  # Euler
            x = x + (x - x0) / s * (s_next - s)
        else:  # RES second order in λ = −log σ
            lam, lam_next, lam_prev = -math.log(s), -math.log(s_next), -math.log(sigmas[i - 1])
            h = lam_next - lam
            c2 = (lam_prev - lam) / h
            phi1 = math.expm1(-h) / -h
            phi2 = (phi1 - 1) / -h
            x = math.exp(-h) * x + h * ((phi1 - phi2 / c2) * x0 + (phi2 / c2) * old)
        old = x0
    with torch.no_grad():
        image = pipe.vae.decode(x / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor).sample
    want = np.round((image / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - turbo_euler).max() > 4  # res_multistep ≠ Euler here


def test_z_image_base_template_cfg_4_equals_the_pipeline_at_guidance_3(z_models, pipe, tmp_path):
    """image_z_image as it ships: its ResolutionSelector (here at 0.01 megapixels: 104² is under the 256 minimum,
    so 256×256) sizes the subgraph's EmptySD3LatentImage, its SaveImageAdvanced writes an 8-bit sRGB PNG."""
    doc = json.loads(BASE.read_text())  # its 1 megapixel is an integer, so --set cannot make it 0.01
    next(n for n in doc["nodes"] if n["type"] == "ResolutionSelector")["widgets_values"][1] = 0.01
    (tmp_path / BASE.name).write_text(json.dumps(doc))
    got = run(tmp_path / BASE.name, z_models, tmp_path / "out", "76:69.steps=4", "76:69.seed=7",
              "76:69.sampler_name=euler")
    want = pipeline_image(pipe, prompt_of(BASE, "76:67"), steps=4, seed=7, guidance=3.0, negative="", size=128)
    assert got.shape == want.shape == (128, 128, 3)
    assert np.abs(got - want).max() <= 1
    unguided = pipeline_image(pipe, prompt_of(BASE, "76:67"), steps=4, seed=7, size=128)
    assert np.abs(unguided - want).max() > 4  # the negative pass matters here
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["Z_image_base_00001_.png"]


def test_resolution_selector_is_comfyuis_arithmetic_and_save_image_advanced_png_8_bit_only():
    from nodegraph.comfy.constants import resolution
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import refusals

    scale = math.sqrt(1024 * 1024 / (16 * 9))  # √(megapixels·1024² / (w·h)), each side rounded to the multiple
    assert resolution("16:9 (Widescreen)", 1.0, 8) == (round(16 * scale / 8) * 8, round(9 * scale / 8) * 8)
    assert resolution("1:1 (Square)", 1.0, 64) == (1024, 1024)
    assert resolution("3:2 (Photo)", 0.01, 8) == (384, 256)  # under the 256 minimum: k·(3, 2), k a multiple of 8 ≥ 128
    api = read_workflow(BASE).api
    assert refusals(api) == []
    api["95"]["inputs"]["bit_depth"] = "16-bit"
    assert refusals(api) == ["node 95 (SaveImageAdvanced): bit_depth '16-bit'"]
    api["94"]["inputs"]["aspect_ratio"] = "5:4"
    with pytest.raises(ComfyError, match=r"node 94 \(ResolutionSelector\) input `aspect_ratio`: '5:4' is not one of"):
        from nodegraph.comfy.constants import fold_constants

        fold_constants(api, "w.json")


def translate_turbo(z_models, models=None, **inner: str):
    """Translate image_z_image_turbo with the subgraph's inner values changed (`node__input`="value")."""
    from nodegraph.comfy.command import apply_comfy_sets
    from nodegraph.comfy.models import ModelPaths
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import translate

    workflow = read_workflow(TURBO)
    apply_comfy_sets(workflow.api, [f"57:{k.replace('__', '.')}={v}" for k, v in inner.items()], str(TURBO))
    return translate(workflow, ModelPaths([models or z_models[1]]))


def test_z_image_template_refusals_name_the_node_and_what_to_do(z_models, tmp_path):
    from nodegraph.comfy.errors import ComfyError

    with pytest.raises(ComfyError, match=r"node 57:30 \(CLIPLoader\): type 'qwen_image'"):
        translate_turbo(z_models, **{"30__type": "qwen_image"})
    with pytest.raises(ComfyError, match=r"'euler_ancestral' on a flow model is not covered yet .*use one of euler"):
        translate_turbo(z_models, **{"3__sampler_name": "euler_ancestral"})
    private = tmp_path / "private-models"  # the files below go here, not into the module's shared z_models folder
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (private / sub).mkdir(parents=True)
        for file in (z_models[1] / sub).iterdir():
            (private / sub / file.name).symlink_to(file)
    with pytest.raises(ComfyError, match=r"node 57:28 \(UNETLoader\) input `unet_name`: qwen_3_4b.safetensors is a "
                                         r"qwen3 model file, not a Z-Image, Flux.1 or SD3 diffusion model"):
        (private / "diffusion_models" / "qwen_3_4b.safetensors").symlink_to(
            z_models[1] / "text_encoders" / "qwen_3_4b.safetensors")
        translate_turbo(z_models, private, **{"28__unet_name": "qwen_3_4b.safetensors"})
    from safetensors.torch import load_file, save_file

    state = load_file(z_models[1] / "diffusion_models" / "z_image_turbo_bf16.safetensors")
    quantized = {**state, "layers.0.attention.qkv.comfy_quant": torch.zeros(8, dtype=torch.uint8),
                 "layers.0.attention.qkv.weight_scale": torch.ones(1)}  # ComfyUI's int8 / mixed-fp8 layout
    save_file(quantized, private / "diffusion_models" / "z_image_turbo_int8_convrot.safetensors")
    with pytest.raises(ComfyError, match=r"z_image_turbo_int8_convrot.safetensors: a ComfyUI quantized export "
                                         r"\(per-layer `comfy_quant`"):
        translate_turbo(z_models, private, **{"28__unet_name": "z_image_turbo_int8_convrot.safetensors"})
    assert sorted(f.name for f in (z_models[1] / "diffusion_models").iterdir()) == ["z_image_bf16.safetensors",
                                                                                      "z_image_turbo_bf16.safetensors"]
    empty = tmp_path / "models"
    (empty / "text_encoders").mkdir(parents=True)
    with pytest.raises(ComfyError) as missing:
        translate_turbo(z_models, empty)
    for folder in ("diffusion_models", "unet", "text_encoders", "clip", "vae"):  # ComfyUI's names and old names
        assert str(empty / folder / "x")[:-1] in str(missing.value)
    assert "3 files of this workflow are missing" in str(missing.value)


def test_flow_schedules_follow_comfyui_model_sampling():
    from nodegraph.comfy.flow import FlowSampling
    from nodegraph.comfy.schedules import ksampler_sigmas

    flow = FlowSampling(shift=3.0)
    torch.testing.assert_close(ksampler_sigmas("simple", 8, flow=flow), torch.tensor(comfy_simple_sigmas(8, 3.0)))
    # "normal": σ(t) on linspace(timestep(σmax), timestep(σmin)): the table's σmin is shifted once more
    sigma_min = 3 * 0.001 / (1 + 2 * 0.001)
    ends = torch.tensor([1.0, 3 * sigma_min / (1 + 2 * sigma_min)])
    torch.testing.assert_close(ksampler_sigmas("normal", 4, flow=flow)[[0, 3]], ends)
    half = ksampler_sigmas("simple", 4, denoise=0.5, flow=flow)  # the last 5 σ of the 8-step schedule
    torch.testing.assert_close(half, torch.tensor(comfy_simple_sigmas(8, 3.0)[-5:]))


def test_import_comfy_writes_the_turbo_template_as_a_graph_giving_the_same_image(z_models, turbo_euler, tmp_path):
    from nodegraph.cli import main

    graph = tmp_path / "z_image_turbo.yaml"
    assert main(["import-comfy", str(TURBO), "-o", str(graph), "--models", str(z_models[1])]) == 0
    assert main(["validate", str(graph)]) == 0
    sets = [f"config={z_models[0]}", "width=64", "height=96", "steps=4", "seed=5", "sampler_name=euler"]
    out = tmp_path / "out"
    assert main(["run", str(graph), "--out", str(out), "-q", *[a for s in sets for a in ("--set", s)]]) == 0
    (png,) = out.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")).astype(int), turbo_euler)


@pytest.mark.parametrize("setting, allowed", [("batch_size=65", "less than or equal to 64"),
                                              ("width=16392", "less than or equal to 16384")])
def test_an_oversized_empty_sd3_latent_is_refused_naming_the_node_before_any_model_loads(z_models, tmp_path, capsys,
                                                                                      setting, allowed):
    from nodegraph.cli import main

    out = tmp_path / "out"
    code = main(["run", str(TURBO), "--models", str(z_models[1]), "--out", str(out), "-q", "--set",
                 f"config={z_models[0]}", "--set", f"57:13.{setting}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and not out.exists(), err
    name = setting.split("=")[0]  # located: the translated graph's node for ComfyUI's node 57:13, and its input
    assert f"`nodes.latent57_13.{name}` of `latent57_13` (ComfyEmptySD3Latent@1): Input should be {allowed}" in err, err


def test_a_qwen_prompt_over_8192_templated_tokens_is_refused_and_one_at_the_bound_encoded_whole(z_models):
    from nodegraph.core import RunContext, RunMode
    from nodegraph.models.loading import load_component
    from nodegraph.nodes.comfy_flow import QWEN_MAX_TOKENS, ComfyQwenTextEncode

    encoder, tokenizer = (load_component(z_models[0], name) for name in ("text_encoder", "tokenizer"))
    templated = tokenizer([tokenizer.apply_chat_template("")], 64)[1].sum().item()  # the chat template's own tokens
    word = " cat"
    assert tokenizer([word * 3], 8)[1].sum().item() == 3  # the tiny vocabulary: one token a " cat"
    at_bound = word * (QWEN_MAX_TOKENS - templated)

    def encode(text):
        inputs = ComfyQwenTextEncode.Inputs(text_encoder=encoder, tokenizer=tokenizer, text=text)
        return ComfyQwenTextEncode().run(inputs, RunContext(mode=RunMode(device="cpu")))["embeddings"]

    assert encode(at_bound).shape[:2] == (1, QWEN_MAX_TOKENS)
    with pytest.raises(ValueError, match=rf"`text`: the prompt \({len(at_bound) + 4} characters\) is longer than "
                                         rf"{QWEN_MAX_TOKENS} Qwen3 tokens in its chat template.*shorten the prompt"):
        encode(at_bound + word)
