"""API vs UI format, ComfyUI PNGs, `--set NODE_ID.INPUT=VALUE`, and `import-comfy` giving the workflow's image.

The reference image is the default API workflow's run (itself checked against diffusers in
test_txt2img_parity.py); each other path must give it bit for bit.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from workflows import DEFAULT_API, api, default_ui, run_cli


def translated_yaml(tmp_path, document, models_dir, name="workflow.json", sets=()) -> str:
    from nodegraph.comfy.command import load_translated

    folder = tmp_path / f"src{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    source = folder / name
    source.write_text(json.dumps(document))
    work = folder / "work"
    work.mkdir()
    args = argparse.Namespace(models=[str(models_dir)], extra_model_paths=None, set=list(sets))
    _, _, _, written = load_translated(str(source), args, work)
    return written.read_text()


def test_ui_workflow_gives_the_same_yaml_as_its_api_export(tmp_path, models_dir):
    # the UI copy routes the VAE through a Reroute, has a Note, and takes the seed from a PrimitiveNode
    ui = translated_yaml(tmp_path, default_ui(), models_dir)
    assert ui == translated_yaml(tmp_path, DEFAULT_API, models_dir)
    assert ui != translated_yaml(tmp_path, api(n3_seed=6), models_dir)  # the comparison sees a changed value


def test_api_under_prompt_key_is_read_like_a_bare_one(tmp_path, models_dir):
    assert translated_yaml(tmp_path, {"prompt": DEFAULT_API, "client_id": "x"}, models_dir) == \
        translated_yaml(tmp_path, DEFAULT_API, models_dir)


def test_imported_yaml_has_the_loop_in_the_open_and_typed_inputs(tmp_path, models_dir):
    import yaml

    doc = yaml.safe_load(translated_yaml(tmp_path, DEFAULT_API, models_dir))
    assert doc["nodes"]["ksampler3"]["type"] == "repeat"
    assert doc["nodes"]["ksampler3"]["nodes"]["ksampler3_step"]["type"] == "./comfy_ksampler_step.yaml"
    assert doc["inputs"]["seed"] == {"type": "int", "default": 5, "description": "ComfyUI node 3 (KSampler) `seed`."}
    assert doc["inputs"]["text_6"]["default"] == "a photo of a cat"
    assert doc["inputs"]["sampler_name"]["choices"][0] == "euler"
    assert doc["inputs"]["ckpt_name"]["default"] == str(models_dir / "checkpoints" / "tiny-sd1.safetensors")


def test_comfy_png_reruns_to_the_same_image(tmp_path, models_dir, sd1_folder, default_run):
    pixels, png = default_run
    assert json.loads(Image.open(png).text["prompt"]) == DEFAULT_API  # the chunk ComfyUI writes
    again, png2 = run_cli(tmp_path, png, models_dir, sd1_folder)
    assert np.array_equal(again, pixels)
    assert png2.name == "ComfyUI_00001_.png"


def test_ui_only_png_reads_its_workflow_chunk(tmp_path, models_dir):
    from nodegraph.comfy.reader import read_workflow

    png = tmp_path / "ui.png"
    info = PngInfo()
    info.add_text("workflow", json.dumps(default_ui()))
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    assert read_workflow(png).api == read_workflow_from(tmp_path, DEFAULT_API)


def read_workflow_from(tmp_path, document):
    from nodegraph.comfy.reader import read_workflow

    path = tmp_path / "api.json"
    path.write_text(json.dumps(document))
    return read_workflow(path).api


def test_save_image_counter_continues_after_existing_files(tmp_path):
    import torch

    from nodegraph.comfy.command import save_images

    (tmp_path / "ComfyUI_00007_.png").write_bytes(b"")
    (tmp_path / "Other_00020_.png").write_bytes(b"")
    written = save_images(torch.zeros(2, 3, 8, 8), tmp_path, "ComfyUI", {"prompt": "{}"})
    assert [p.name for p in written] == ["ComfyUI_00008_.png", "ComfyUI_00009_.png"]
    sub = save_images(torch.zeros(1, 3, 8, 8), tmp_path, "faces/me", {})
    assert sub == [tmp_path / "faces" / "me_00001_.png"]


def test_set_node_input_changes_the_workflow_value(tmp_path, models_dir):
    assert translated_yaml(tmp_path, DEFAULT_API, models_dir, sets=["3.seed=6", "6.text=a red fox"]) == \
        translated_yaml(tmp_path, api(n3_seed=6, n6_text="a red fox"), models_dir)


def test_import_comfy_writes_yaml_that_validates_and_gives_the_same_image(tmp_path, models_dir, sd1_folder,
                                                                         default_run):
    from nodegraph.cli import main

    source = tmp_path / "workflow.json"
    source.write_text(json.dumps(DEFAULT_API))
    graph = tmp_path / "imported" / "graph.yaml"
    assert main(["import-comfy", str(source), "-o", str(graph), "--models", str(models_dir)]) == 0
    assert (graph.parent / "comfy_ksampler_step.yaml").is_file()
    assert main(["validate", str(graph)]) == 0
    out = tmp_path / "out"
    assert main(["run", str(graph), "--out", str(out), "-q", "--set", f"config={sd1_folder}"]) == 0
    (png,) = out.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), default_run[0])


@pytest.mark.parametrize("layout", ["models", "extra_model_paths"])
def test_models_found_under_models_dirs_and_extra_model_paths(tmp_path, models_dir, layout):
    from nodegraph.comfy.models import ModelPaths, read_extra_model_paths

    if layout == "models":
        paths = ModelPaths([tmp_path / "empty", models_dir])
    else:
        yaml_file = tmp_path / "extra_model_paths.yaml"
        yaml_file.write_text(f"comfyui:\n  base_path: {models_dir.parent}\n  checkpoints: |\n    nowhere/\n"
                             f"    {models_dir.name}/checkpoints/\n")
        paths = ModelPaths([], read_extra_model_paths(yaml_file))
    assert paths.find("checkpoints", "tiny-sd1.safetensors", "here") == \
        (models_dir / "checkpoints" / "tiny-sd1.safetensors").resolve()


def test_a_nodegraph_graph_saved_as_json_still_runs_as_a_graph(tmp_path):
    from nodegraph.comfy.reader import is_comfy_file

    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"nodegraph": 1, "nodes": {}, "outputs": {}}))
    assert not is_comfy_file(str(graph))
    (tmp_path / "w.json").write_text(json.dumps(DEFAULT_API))
    assert is_comfy_file(str(tmp_path / "w.json"))


def test_ui_workflow_gives_the_same_image(tmp_path, models_dir, sd1_folder, default_run):
    pixels, _ = run_cli(tmp_path, default_ui(), models_dir, sd1_folder)
    assert np.array_equal(pixels, default_run[0])
