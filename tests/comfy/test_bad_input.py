"""Bad ComfyUI input: one clear message naming the node id and input, exit 2, no traceback, no output folder."""

from __future__ import annotations

import copy
import json

import pytest
from PIL import Image

from workflows import DEFAULT_API, api, default_ui


def run_bad(tmp_path, capsys, source, models_dir) -> str:
    from nodegraph.cli import main

    out = tmp_path / "out"
    code = main(["run", str(source), "--models", str(models_dir), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and not out.exists()
    return err


def write(tmp_path, document, name="workflow.json"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_malformed_json_names_line_and_column(tmp_path, capsys, models_dir):
    err = run_bad(tmp_path, capsys, write(tmp_path, '{"3": {"class_type": "KSampler",\n  "inputs": {,}}}'), models_dir)
    assert "workflow.json:2:14: malformed JSON" in err


def test_ui_dangling_link_names_node_and_input(tmp_path, capsys, models_dir):
    ui = default_ui()
    ui["links"] = [link for link in ui["links"] if link[0] != 4]  # KSampler's positive input points at nothing
    err = run_bad(tmp_path, capsys, write(tmp_path, ui), models_dir)
    assert "node 3 (KSampler) input `positive`: link 4 is not in the workflow's `links`" in err


def test_missing_model_lists_every_place_looked(tmp_path, capsys, models_dir):
    err = run_bad(tmp_path, capsys, write(tmp_path, api(n4_ckpt_name="sd15/v1-5.safetensors")), models_dir)
    assert "node 4 (CheckpointLoaderSimple) input `ckpt_name`: model 'sd15/v1-5.safetensors' not found" in err
    assert str(models_dir / "checkpoints" / "sd15" / "v1-5.safetensors") in err


def test_a_checkpoint_that_is_not_a_safetensors_file_is_refused_by_path(tmp_path, capsys):
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "broken.safetensors").write_bytes(b"<html>not found</html>")  # a failed download
    err = run_bad(tmp_path, capsys, write(tmp_path, api(n4_ckpt_name="broken.safetensors")), models)
    assert f"{models / 'checkpoints' / 'broken.safetensors'}: not a readable safetensors file" in err
    assert "re-download or re-save it" in err


def test_model_name_cannot_leave_the_models_folder(tmp_path, capsys, models_dir):
    err = run_bad(tmp_path, capsys, write(tmp_path, api(n4_ckpt_name="../../etc/passwd")), models_dir)
    assert "is not a model name" in err


@pytest.mark.parametrize("change, message", [
    ({"n3_steps": "ten"}, "node 3 (KSampler) input `steps`: expected an integer, got 'ten'"),
    ({"n5_width": 64.5}, "node 5 (EmptyLatentImage) input `width`: expected an integer, got 64.5"),
    ({"n6_text": 7}, "node 6 (CLIPTextEncode) input `text`: expected a string, got 7"),
    ({"n3_positive": "x"}, "node 3 (KSampler) input `positive`: expected a link to a CONDITIONING output"),
    ({"n8_vae": ["6", 0]}, "node 8 (VAEDecode) input `vae`: expected VAE, but node 6 output 0 is CONDITIONING"),
])
def test_wrong_widget_value_names_node_and_input(tmp_path, capsys, models_dir, change, message):
    assert message in run_bad(tmp_path, capsys, write(tmp_path, api(**change)), models_dir)


def test_png_without_comfyui_chunks_says_so(tmp_path, capsys, models_dir):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    err = run_bad(tmp_path, capsys, tmp_path / "plain.png", models_dir)
    assert "no ComfyUI `prompt` or `workflow` text chunk" in err


def test_unsupported_nodes_and_names_are_all_listed_before_running(tmp_path, capsys, models_dir):
    doc = copy.deepcopy(DEFAULT_API)
    doc["3"]["inputs"]["sampler_name"] = "dpm_adaptive"  # (dpmpp_sde and upscale models are covered now)
    doc["10"] = {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "flux1-redux-dev.safetensors"}}
    doc["11"] = {"class_type": "ImageInvert", "inputs": {"image": ["8", 0]}}  # (CLIP vision is covered now)
    err = run_bad(tmp_path, capsys, write(tmp_path, doc), models_dir)
    assert "3 parts of this workflow nodegraph cannot run yet (nothing was run)" in err
    for part in ("node 3 (KSampler): sampler_name 'dpm_adaptive'", "node 10: StyleModelLoader",
                 "node 11: ImageInvert"):
        assert part in err


def test_workflow_without_output_node_is_refused(tmp_path, capsys, models_dir):
    doc = {k: v for k, v in DEFAULT_API.items() if k != "9"}
    assert "no SaveImage or PreviewImage node" in run_bad(tmp_path, capsys, write(tmp_path, doc), models_dir)


def test_api_link_to_missing_node_is_refused(tmp_path, capsys, models_dir):
    err = run_bad(tmp_path, capsys, write(tmp_path, api(n3_model=["40", 0])), models_dir)
    assert "node 3 (KSampler) input `model` links to node 40, which is not in the workflow" in err


def test_hostile_chains_and_sizes_are_refused_without_traceback(tmp_path, capsys, models_dir):
    doc = api()
    for n in range(10, 1010):  # 1000 LatentUpscale nodes in a chain
        doc[str(n)] = {"class_type": "LatentUpscale", "inputs": {"upscale_method": "nearest-exact", "width": 64,
                                                                 "height": 64, "crop": "disabled",
                                                                 "samples": [str(n - 1) if n > 10 else "3", 0]}}
    doc["8"]["inputs"]["samples"] = ["1009", 0]
    assert "chain of linked nodes is too long" in run_bad(tmp_path, capsys, write(tmp_path, doc), models_dir)
    many = {str(n): {"class_type": "Note", "inputs": {}} for n in range(3000)}
    assert "more than a workflow this import takes" in run_bad(tmp_path, capsys, write(tmp_path, many, "m.json"),
                                                               models_dir)


def test_a_checkpoint_of_an_uncovered_family_is_refused_by_name(tmp_path):
    from nodegraph.comfy.checkpoints import Checkpoint
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.models import ModelPaths
    from nodegraph.comfy.reader import Workflow
    from nodegraph.comfy.translate import translate

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "tiny-sd1.safetensors").touch()
    # (SD1.x/SD2.x inpainting files are covered now; SDXL inpainting ones are not)
    with pytest.raises(ComfyError, match=r"node 4 \(CheckpointLoaderSimple\) input `ckpt_name`: tiny-sd1.safetensors "
                                         r"is a sdxl_base_inpaint checkpoint"):
        translate(Workflow(api(), "w.json"), ModelPaths([tmp_path]),
                  checkpoint=lambda path: Checkpoint("sdxl_base_inpaint"))
    with pytest.raises(ComfyError, match=r"node 3 \(KSampler\) input `latent_image`: the model is an inpainting one"):
        translate(Workflow(api(), "w.json"), ModelPaths([tmp_path]), checkpoint=lambda path: Checkpoint("sd1_inpaint"))
    translate(Workflow(api(), "w.json"), ModelPaths([tmp_path]), checkpoint=lambda path: Checkpoint("sd1"))


def test_every_missing_model_file_is_named_with_its_folder_before_anything_loads(tmp_path, capsys, models_dir):
    doc = api(n4_ckpt_name="nowhere.safetensors")
    doc["10"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "gone.safetensors", "strength_model": 1.0,
                                                        "strength_clip": 1.0, "model": ["4", 0], "clip": ["4", 1]}}
    doc["3"]["inputs"]["model"] = ["10", 0]
    err = run_bad(tmp_path, capsys, write(tmp_path, doc), models_dir)
    assert "2 files of this workflow are missing (nothing was run)" in err
    assert "node 4 (CheckpointLoaderSimple) input `ckpt_name`: model 'nowhere.safetensors' not found" in err
    assert "node 10 (LoraLoader) input `lora_name`: model 'gone.safetensors' not found" in err
    assert str(models_dir / "checkpoints" / "nowhere.safetensors") in err
    assert str(models_dir / "loras" / "gone.safetensors") in err
