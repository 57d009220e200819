"""The Flux graphs from the command line, given wrong input: one clear message naming the input, a non-zero exit,
no traceback, no image written, and nothing loaded first (the folders below hold config files only, so reading
any weights would fail differently)."""

from __future__ import annotations

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
