"""The Z-Image graph from the command line. Wrong input (and a Z-Image checkpoint given to the UNet graphs): one
clear message naming the input, a non-zero exit, no traceback, no image written, and nothing loaded first (the
folders below hold config files only, so reading any weights would fail differently). A good run writes one PNG
per image of the batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(graph: str, tmp_path: Path, **sets) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "nodegraph.cli", "run", str(ROOT / "graphs" / graph), "-q", "--no-prefetch",
            "--out", str(tmp_path / "out")]
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


def configs_only(source: Path, target: Path, vae_changes: dict | None = None) -> Path:
    """Copy the json files of a pipeline folder (no weights), optionally editing the VAE config."""
    for file in source.rglob("*.json"):
        dest = target / file.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, dest)
    if vae_changes:
        config = target / "vae" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), **vae_changes}))
    return target


def test_a_stable_diffusion_checkpoint_given_to_the_z_image_graph_is_refused(tmp_path):
    sd = tmp_path / "sd"
    (sd / "unet").mkdir(parents=True)
    (sd / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                     "unet": ["diffusers", "UNet2DConditionModel"]}))
    (sd / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    result = run_cli("z_image.yaml", tmp_path, model=sd, steps=2, width=32, height=32)
    assert_refused(result, tmp_path, "`model`", "Stable Diffusion 1.x/2.x", "graphs/stable_diffusion.yaml",
                   "ZImagePipeline")


def test_a_z_image_vae_with_4_latent_channels_is_refused(tiny_z_image, tmp_path):
    folder = configs_only(tiny_z_image, tmp_path / "z4", {"latent_channels": 4})
    result = run_cli("z_image.yaml", tmp_path, model=folder, steps=2, width=32, height=32)
    assert_refused(result, tmp_path, "`model`", "4 latent channels", "16-channel")


@pytest.mark.parametrize("graph", ["stable_diffusion.yaml", "sdxl.yaml"])
def test_a_z_image_checkpoint_given_to_a_unet_graph_is_refused(tiny_z_image, tmp_path, graph):
    folder = configs_only(tiny_z_image, tmp_path / "z")
    result = run_cli(graph, tmp_path, model=folder, steps=2)
    assert_refused(result, tmp_path, "Z-Image checkpoint", "graphs/z_image.yaml")


@pytest.mark.parametrize(("name", "value", "needle"), [("width", 40, "multiple of 16"),
                                                       ("height", 24, "multiple of 16"),
                                                       ("cfg_truncation", 1.5, "above the maximum 1"),
                                                       ("cfg_truncation", -0.1, "below the minimum 0")])
def test_sizes_and_cfg_truncation_out_of_range_are_refused_at_validation(tmp_path, name, value, needle):
    result = run_cli("z_image.yaml", tmp_path, model=tmp_path / "never-read", **{name: value})
    assert_refused(result, tmp_path, f"inputs.{name}", needle)


def test_the_cli_writes_one_png_per_image_of_a_batch(tiny_z_image, tmp_path):
    result = run_cli("z_image.yaml", tmp_path, model=tiny_z_image, steps=2, width=32, height=16, batch_size=2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["image_0.png", "image_1.png"]


def test_a_transformer_file_given_as_model_is_sent_to_the_transformer_input(tiny_z_image, tmp_path):
    from safetensors.torch import load_file, save_file
    from test_z_image_single_file import original_layout

    state = load_file(tiny_z_image / "transformer" / "diffusion_pytorch_model.safetensors")
    save_file(original_layout(state, ""), tmp_path / "z_image_turbo_bf16.safetensors")
    result = run_cli("z_image.yaml", tmp_path, model=tmp_path / "z_image_turbo_bf16.safetensors", steps=2)
    assert_refused(result, tmp_path, "`model`", "pass it as `transformer`", "Z-Image pipeline folder or repo")
