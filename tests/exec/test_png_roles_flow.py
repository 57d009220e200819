"""The flow-matching graphs (Flux, SD3, Z-Image) declare what their inputs mean through port roles (core/types.py
Role), so their PNGs' A1111 `parameters` carry the prompt, negative prompt, steps, guidance and seed, not only the
model and seed. Flux's distilled `guidance` is its guidance_scale (written "CFG scale"); its negative prompt is the
true-CFG one. One real run of graphs/flux.yaml and one of graphs/sd3.yaml on the tiny random checkpoints write the PNG
read back here."""

from __future__ import annotations

import PIL.Image
import pytest

from nodegraph import load_graph
from nodegraph.spec.port_roles import input_roles
from tests.graphs.tiny_pipelines import REPO

COMMON = {"prompt": "prompt", "seed": "seed", "model": "model"}
EXPECTED = {  # graph: {role: the graph input that has it}
    "flux.yaml": {**COMMON, "negative_prompt": "negative_prompt", "steps": "steps", "guidance_scale": "guidance",
                  "lora": "lora", "lora_scale": "lora_scale"},
    "flux_img2img.yaml": {**COMMON, "negative_prompt": "negative_prompt", "steps": "steps",
                          "guidance_scale": "guidance", "strength": "strength", "lora": "lora",
                          "lora_scale": "lora_scale"},
    "sd3.yaml": {**COMMON, "negative_prompt": "negative_prompt", "steps": "steps",
                 "guidance_scale": "guidance_scale", "lora": "lora", "lora_scale": "lora_scale"},
    "z_image.yaml": {**COMMON, "negative_prompt": "negative_prompt", "steps": "steps",
                     "guidance_scale": "guidance_scale"},
    "z_image_img2img.yaml": {**COMMON, "negative_prompt": "negative_prompt", "steps": "steps",
                             "guidance_scale": "guidance_scale", "strength": "strength"},
}


@pytest.mark.parametrize("graph", sorted(EXPECTED))
def test_the_flow_graphs_inputs_have_their_roles(graph):
    roles = input_roles(load_graph(str(REPO / "graphs" / graph)).checked)
    assert {role: roles.get(role) for role in EXPECTED[graph]} == EXPECTED[graph]


def run_png(graph: str, out, **sets) -> list[str]:
    from nodegraph.cli import main

    args = ["run", str(REPO / "graphs" / graph), "--quiet", "--out", str(out)]
    for name, value in sets.items():
        args += ["--set", f"{name}={value}"]
    assert main(args) == 0
    with PIL.Image.open(out / "image.png") as img:
        return img.text["parameters"].splitlines()


def test_a_flux_run_png_names_prompt_true_cfg_negative_steps_guidance_and_seed(tmp_path_factory, tmp_path):
    from tests.flow.tiny_flux import save_tiny_flux

    model = save_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux-dev")
    lines = run_png("flux.yaml", tmp_path, model=model, prompt="a red fox", negative_prompt="blurry",
                    true_cfg_scale=2.0, steps=2, guidance=4.5, seed=7, width=32, height=32, max_sequence_length=16)
    assert lines[:2] == ["a red fox", "Negative prompt: blurry"]
    assert lines[2].startswith("Steps: 2, Sampler: ")
    assert ", CFG scale: 4.5, Seed: 7, Size: 32x32, " in lines[2]


def test_an_sd3_run_png_names_prompt_negative_steps_cfg_and_seed(tmp_path_factory, tmp_path):
    from tests.sd3.tiny_sd3 import save_tiny_sd3

    model = save_tiny_sd3(tmp_path_factory.mktemp("sd3") / "tiny-sd3")
    lines = run_png("sd3.yaml", tmp_path, model=model, prompt="a red fox", negative_prompt="blurry", steps=2,
                    guidance_scale=5.0, seed=7, width=32, height=32, max_sequence_length=16)
    assert lines[:2] == ["a red fox", "Negative prompt: blurry"]
    assert lines[2].startswith("Steps: 2, Sampler: ")
    assert ", CFG scale: 5.0, Seed: 7, Size: 32x32, " in lines[2]
