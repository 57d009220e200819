"""SD 2.x single files in ComfyUI's default workflow: v-prediction read from the file as ComfyUI reads it, and
ComfyUI's SD2 text layer (the penultimate, normed: the 24-layer file's layer 23, which is diffusers' last layer
of its 23-layer encoder; on this 2-layer tiny file, diffusers' clip skip 1), each against diffusers' pipeline
configured as ComfyUI samples (Euler linspace, first noise ×√(1 + σmax²); comfyui-facts.md)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from workflows import DEFAULT_API, api, diffusers_comfy_image, run_cli


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture(scope="module")
def sd2_v_run(tmp_path_factory, sd2_models):
    folders, models = sd2_models
    return run_cli(tmp_path_factory.mktemp("sd2-v"), api(n4_ckpt_name="tiny-sd2-v.safetensors"), models,
                   folders["v"])[0]


def test_sd2_v_file_is_sampled_as_v_prediction_with_the_penultimate_text_layer(sd2_v_run, sd2_models):
    from diffusers import EulerDiscreteScheduler

    folders, _ = sd2_models
    theirs = diffusers_comfy_image(folders["v"], EulerDiscreteScheduler, clip_skip=1, timestep_spacing="linspace",
                                   prediction_type="v_prediction")
    assert max_diff(sd2_v_run, theirs) <= 1
    # sensitive: the same file read as ε is another image
    as_eps = diffusers_comfy_image(folders["v"], EulerDiscreteScheduler, clip_skip=1, timestep_spacing="linspace",
                                   prediction_type="epsilon")
    assert max_diff(sd2_v_run, as_eps) > 8  # (the last text layer: the CLIPSetLastLayer −1 test below)


def test_prediction_type_and_text_depth_are_read_from_the_file_by_comfyuis_rule(sd2_models):
    # the two files differ only in the std of output_blocks.11.1.transformer_blocks.0.norm1.bias: 0.3 and 0.03
    # around ComfyUI's 0.09 threshold (the ε file's image path is the SD1 one, checked by the txt2img tests)
    from nodegraph.comfy.checkpoints import Checkpoint, read_checkpoint

    _, models = sd2_models
    assert read_checkpoint(models / "checkpoints" / "tiny-sd2-v.safetensors") == Checkpoint("sd2", "v", 2)
    assert read_checkpoint(models / "checkpoints" / "tiny-sd2-eps.safetensors") == Checkpoint("sd2", "eps", 2)


def test_clip_set_last_layer_minus_1_on_sd2_reads_the_files_last_layer(tmp_path, sd2_models, sd2_v_run):
    from diffusers import EulerDiscreteScheduler

    folders, models = sd2_models
    doc = copy.deepcopy(DEFAULT_API)
    doc["4"]["inputs"]["ckpt_name"] = "tiny-sd2-v.safetensors"
    doc["10"] = {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -1, "clip": ["4", 1]}}
    doc["6"]["inputs"]["clip"] = doc["7"]["inputs"]["clip"] = ["10", 0]
    ours = run_cli(tmp_path, doc, models, folders["v"])[0]
    theirs = diffusers_comfy_image(folders["v"], EulerDiscreteScheduler, timestep_spacing="linspace",
                                   prediction_type="v_prediction")
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, sd2_v_run) > 8
