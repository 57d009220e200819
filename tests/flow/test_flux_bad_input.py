"""The Flux graphs from the command line, given wrong input: one clear message naming the input, a non-zero exit,
no traceback, no image written, and nothing loaded first (the folders below hold config files only, so reading
any weights would fail differently). A good run writes one PNG per image, whose recipe runs again."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_z_image_bad_input import assert_refused, configs_only, run_cli


def test_a_z_image_checkpoint_given_to_the_flux_graph_is_refused_before_loading(tiny_z_image, tmp_path):
    folder = configs_only(tiny_z_image, tmp_path / "z")
    result = run_cli("flux.yaml", tmp_path, model=folder, steps=2, width=32, height=32)
    assert_refused(result, tmp_path, "`model`", "Z-Image checkpoint", "graphs/z_image.yaml", "FluxPipeline")


def test_a_flux_fill_like_folder_whose_transformer_takes_other_features_is_refused(tiny_flux_dev, tmp_path):
    import json

    folder = configs_only(tiny_flux_dev, tmp_path / "fill")
    config = folder / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "in_channels": 96}))
    result = run_cli("flux_img2img.yaml", tmp_path, model=folder, image=tmp_path / "never-read.png", width=32,
                     height=32)
    assert_refused(result, tmp_path, "`model`", "96 features", "Fill or Depth")


def test_a_flux_transformer_file_given_as_model_is_sent_to_the_transformer_input(tiny_flux_dev, tmp_path):
    from safetensors.torch import load_file, save_file
    from test_flux_single_file import to_bfl

    state = load_file(tiny_flux_dev / "transformer" / "diffusion_pytorch_model.safetensors")
    save_file(to_bfl(state), tmp_path / "flux1-dev.safetensors")
    result = run_cli("flux.yaml", tmp_path, model=tmp_path / "flux1-dev.safetensors", steps=2)
    assert_refused(result, tmp_path, "`model`", "pass it as `transformer`", "Flux pipeline folder or repo")


@pytest.mark.parametrize(("graph", "name", "value", "needle"), [
    ("flux.yaml", "width", 40, "multiple of 16"),
    ("flux_img2img.yaml", "height", 24, "multiple of 16"),
    ("flux.yaml", "max_sequence_length", 600, "above the maximum 512")])
def test_sizes_and_a_too_long_max_sequence_length_are_refused_at_validation(tmp_path, graph, name, value, needle):
    result = run_cli(graph, tmp_path, model=tmp_path / "never-read", image=tmp_path / "never.png", **{name: value})
    assert_refused(result, tmp_path, f"inputs.{name}", needle)


def test_a_good_run_writes_one_png_per_image_and_the_png_runs_again_to_the_same_pixels(tiny_flux_schnell, tmp_path):
    import json

    import numpy as np
    import PIL.Image

    result = run_cli("flux.yaml", tmp_path, model=tiny_flux_schnell, steps=1, width=32, height=16, batch_size=2,
                     prompt="a red fox", guidance=0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["image_0.png", "image_1.png"]
    with PIL.Image.open(tmp_path / "out" / "image_0.png") as img:
        recipe, pixels = json.loads(img.text["nodegraph"]), np.asarray(img)
    assert recipe["inputs"]["prompt"] == "a red fox" and "flux_cached_step.yaml" in recipe["graph"]["files"]
    again = subprocess.run([sys.executable, "-m", "nodegraph.cli", "run", str(tmp_path / "out" / "image_0.png"), "-q",
                            "--no-prefetch", "--out", str(tmp_path / "again")], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with PIL.Image.open(tmp_path / "again" / "image_0.png") as img:
        assert np.array_equal(np.asarray(img), pixels)
