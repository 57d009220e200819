"""graphs/sd3.yaml given wrong input: one clear message naming the input, and from the command line a non-zero
exit, no traceback and no image written. A checkpoint of another family is refused from its config files alone
(the folders below hold config files only, so reading any weights would fail differently)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodegraph import run_graph

ROOT = Path(__file__).resolve().parents[2]
GRAPH = str(ROOT / "graphs" / "sd3.yaml")


def run_cli(tmp_path: Path, **sets) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "nodegraph.cli", "run", GRAPH, "-q", "--no-prefetch", "--out", str(tmp_path / "out")]
    for name, value in sets.items():
        args += ["--set", f"{name}={value}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def assert_refused(result: subprocess.CompletedProcess, tmp_path: Path, *needles: str) -> None:
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def pipeline_configs(folder: Path, kind: str, components: dict[str, dict]) -> Path:
    """A folder of config files only: model_index.json naming `kind`, one config.json per component."""
    index = {"_class_name": kind}
    for name, config in components.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "config.json").write_text(json.dumps(config))
        index[name] = ["diffusers", config["_class_name"]]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def test_a_stable_diffusion_checkpoint_is_refused_from_the_command_line(tmp_path):
    sd = pipeline_configs(tmp_path / "sd", "StableDiffusionPipeline", {"unet": {"_class_name": "UNet2DConditionModel"}})
    result = run_cli(tmp_path, model=sd, steps=2, width=32, height=32)
    assert_refused(result, tmp_path, "`model`", "Stable Diffusion 1.x/2.x", "graphs/stable_diffusion.yaml",
                   "StableDiffusion3Pipeline")


def test_a_width_not_a_multiple_of_16_is_refused_at_validation(tmp_path):
    result = run_cli(tmp_path, model=tmp_path / "never-read", width=40)
    assert_refused(result, tmp_path, "inputs.width", "multiple of 16")


def refusal(**inputs) -> str:
    with pytest.raises(Exception) as e:
        run_graph(GRAPH, inputs=inputs, device="cpu")
    return str(e.value)


@pytest.mark.parametrize("kind, needles", [
    ("FluxPipeline", ["a Flux checkpoint", "graphs/flux.yaml"]),
    ("ZImagePipeline", ["a Z-Image checkpoint", "graphs/z_image.yaml"]),
    ("StableDiffusionXLPipeline", ["an SDXL checkpoint", "graphs/sdxl.yaml"]),
])
def test_other_flow_and_unet_families_are_refused_naming_their_graph(tmp_path, kind, needles):
    folder = pipeline_configs(tmp_path / "m", kind, {"transformer": {"_class_name": "FluxTransformer2DModel"}})
    message = refusal(model=str(folder), steps=2, width=32, height=32)
    assert "`model`" in message and all(n in message for n in needles), message


def test_a_vae_that_does_not_fit_the_transformer_is_refused(tiny_sd3, tmp_path):
    folder = tmp_path / "sd3"
    for file in tiny_sd3.rglob("*.json"):
        dest = folder / file.relative_to(tiny_sd3)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, dest)
    config = folder / "vae" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "latent_channels": 16}))
    message = refusal(model=str(folder), steps=2, width=32, height=32)
    assert "16 latent channels" in message and "takes 4" in message, message


@pytest.mark.parametrize("change, needles", [
    ({"skip_guidance_layers": "1, 9"}, ["`skip_guidance_layers` '1, 9'", "blocks 0 to 3"]),
    ({"width": 144}, ["`width` 144", "at most 128 pixels"]),
])
def test_settings_the_model_cannot_take_are_refused_naming_the_input(tiny_sd3, change, needles):
    settings = dict(model=str(tiny_sd3), steps=2, width=32, height=32, guidance_scale=3.0, max_sequence_length=8,
                    prompt="a red fox", skip_layer_guidance_stop=1.0)
    message = refusal(**{**settings, **change})
    assert all(n in message for n in needles), message


def test_max_sequence_length_above_t5s_limit_is_refused_at_validation(tmp_path):
    message = refusal(model=str(tmp_path / "never-read"), max_sequence_length=600)
    assert "max_sequence_length" in message and "512" in message, message


def test_skip_guidance_layers_that_are_not_block_indices_are_refused_before_anything_loads(tmp_path):
    result = run_cli(tmp_path, model=tmp_path / "never-read", skip_guidance_layers="7, x")
    assert_refused(result, tmp_path, "input `skip_guidance_layers`", "'7, x' is not a list of block indices",
                   "e.g. \"7, 8, 9\"")


@pytest.mark.parametrize("graph", ["stable_diffusion.yaml", "sdxl.yaml", "z_image.yaml"])
def test_an_sd3_checkpoint_given_to_another_graph_is_refused_naming_graphs_sd3(tiny_sd3, tmp_path, graph):
    folder = tmp_path / "sd3"
    shutil.copytree(tiny_sd3, folder, ignore=shutil.ignore_patterns("*.safetensors"))  # nothing to load by mistake
    with pytest.raises(Exception) as e:
        run_graph(str(ROOT / "graphs" / graph), inputs={"model": str(folder), "steps": 2}, device="cpu")
    assert "Stable Diffusion 3 checkpoint" in str(e.value) and "graphs/sd3.yaml" in str(e.value), str(e.value)
