"""UI-format subgraphs (`definitions.subgraphs`) are flattened as ComfyUI's front end sends them: the default graph
with its KSampler and VAEDecode moved into a subgraph (fed through subgraph inputs, the seed from a PrimitiveNode
outside, the image out through a subgraph output) gives the default graph's image; inner ids read
`<instance>:<inner>`; an instance's own widget values reach the inner widgets its subgraph inputs feed."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from workflows import default_ui, run_cli


def in_a_subgraph(widgets_values=None) -> dict:
    ui = default_ui()
    inner = {n["id"]: copy.deepcopy(n) for n in ui["nodes"] if n["id"] in (3, 8)}
    ui["nodes"] = [n for n in ui["nodes"] if n["id"] not in (3, 8)]
    ksampler, decode = inner[3], inner[8]
    ksampler["id"], decode["id"] = 1, 2
    for slot, link in zip(ksampler["inputs"], (101, 102, 103, 104, 106)):  # model, positive, negative, latent, seed
        slot["link"] = link
    decode["inputs"][0]["link"], decode["inputs"][1]["link"] = 107, 105  # samples from the KSampler, vae input 4
    names = ("model", "positive", "negative", "latent_image", "vae", "seed")  # subgraph inputs 0…5
    targets = ((1, 0), (1, 1), (1, 2), (1, 3), (2, 1), (1, 4))  # the inner (node, slot) each feeds
    links = [{"id": 101 + k, "origin_id": -10, "origin_slot": k, "target_id": node, "target_slot": slot,
              "type": "*"} for k, (node, slot) in enumerate(targets)]
    links += [{"id": 107, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "LATENT"},
              {"id": 108, "origin_id": 2, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "IMAGE"}]
    subgraph = {"id": "sample-and-decode", "name": "Sample and decode", "nodes": [ksampler, decode], "links": links,
                "inputs": [{"name": n, "linkIds": [101 + k]} for k, n in enumerate(names)],
                "outputs": [{"name": "IMAGE", "linkIds": [108]}]}
    outer = (1, 4, 6, 2, 11, 20)  # the top-level links into the instance's inputs, in the same order
    ui["nodes"].append({"id": 20, "type": "sample-and-decode", "mode": 0,
                        "inputs": [{"name": n, "type": "*", "link": link} for n, link in zip(names, outer)],
                        "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9]}],
                        "widgets_values": widgets_values or []})
    ui["links"] = [[1, 4, 0, 20, 0, "MODEL"], [2, 5, 0, 20, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
                   [4, 6, 0, 20, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 20, 2, "CONDITIONING"],
                   [9, 20, 0, 9, 0, "IMAGE"], [10, 4, 2, 10, 0, "VAE"], [11, 10, 0, 20, 4, "VAE"],
                   [20, 12, 0, 20, 5, "INT"]]
    ui["definitions"] = {"subgraphs": [subgraph]}
    return ui


def test_a_subgraph_runs_as_the_flat_graph_with_comfyuis_ids(tmp_path, models_dir, sd1_folder, default_run):
    from nodegraph.comfy.reader import read_workflow

    path = tmp_path / "sub.json"
    path.write_text(json.dumps(in_a_subgraph()))
    api = read_workflow(path).api
    assert api["20:1"]["class_type"] == "KSampler" and api["20:1"]["inputs"]["seed"] == 5  # the PrimitiveNode's
    assert api["20:2"]["inputs"]["samples"] == ["20:1", 0] and api["9"]["inputs"]["images"] == ["20:2", 0]
    ours = run_cli(tmp_path / "run", in_a_subgraph(), models_dir, sd1_folder)[0]
    assert int(np.abs(ours.astype(int) - default_run[0].astype(int)).max()) == 0


def test_an_instances_own_widget_value_reaches_the_inner_widget_unless_its_input_is_linked(tmp_path):
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.subgraphs import promoted_inputs

    ui = in_a_subgraph(widgets_values=[7])
    assert promoted_inputs(ui["definitions"]["subgraphs"][0]) == ["seed"]  # the only input feeding a widget
    (tmp_path / "linked.json").write_text(json.dumps(ui))
    assert read_workflow(tmp_path / "linked.json").api["20:1"]["inputs"]["seed"] == 5  # the PrimitiveNode's link
    ui["nodes"][-1]["inputs"] = [slot for slot in ui["nodes"][-1]["inputs"] if slot["name"] != "seed"]
    (tmp_path / "own.json").write_text(json.dumps(ui))
    api = read_workflow(tmp_path / "own.json").api
    assert api["20:1"]["inputs"]["seed"] == 7 and api["20:1"]["inputs"]["steps"] == 4  # only the promoted one
    assert all(entry["class_type"] != "PrimitiveNode" for entry in api.values())


def test_an_instance_whose_values_do_not_match_its_promoted_inputs_is_refused(tmp_path):
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.reader import read_workflow

    path = tmp_path / "sub.json"
    path.write_text(json.dumps(in_a_subgraph(widgets_values=[7, 8])))
    with pytest.raises(ComfyError, match=r"node 20 \(subgraph 'Sample and decode'\) carries 2 widget values for the "
                                         r"1 subgraph inputs that feed inner widgets \(seed\)"):
        read_workflow(path)


def test_nested_subgraphs_wire_through_both_levels(tmp_path):
    """The VAEDecode moved one level deeper (a subgraph inside the subgraph, fed through both levels' inputs, its
    image out through both levels' outputs): the flat graph is the same, with ids `20:3:2`."""
    from nodegraph.comfy.reader import read_workflow

    ui = in_a_subgraph()
    outer = ui["definitions"]["subgraphs"][0]
    ksampler, decode = outer["nodes"]
    inner = {"id": "decode-only", "name": "Decode", "nodes": [dict(decode, inputs=[
        dict(decode["inputs"][0], link=201), dict(decode["inputs"][1], link=202)])],
        "links": [{"id": 201, "origin_id": -10, "origin_slot": 0, "target_id": 2, "target_slot": 0},
                  {"id": 202, "origin_id": -10, "origin_slot": 1, "target_id": 2, "target_slot": 1},
                  {"id": 203, "origin_id": 2, "origin_slot": 0, "target_id": -20, "target_slot": 0}],
        "inputs": [{"name": "samples"}, {"name": "vae"}], "outputs": [{"name": "IMAGE"}]}
    outer["nodes"] = [ksampler, {"id": 3, "type": "decode-only", "mode": 0,
                                 "inputs": [{"name": "samples", "link": 107}, {"name": "vae", "link": 105}],
                                 "outputs": [{"name": "IMAGE", "links": [108]}]}]
    for link in outer["links"]:  # the outer subgraph's links now end at / start from the nested instance 3
        if link["id"] in (105, 107):
            link["target_id"], link["target_slot"] = 3, (1 if link["id"] == 105 else 0)
        if link["id"] == 108:
            link["origin_id"] = 3
    ui["definitions"]["subgraphs"].append(inner)
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(ui))
    api = read_workflow(path).api
    assert api["20:3:2"]["class_type"] == "VAEDecode"
    assert api["20:3:2"]["inputs"] == {"samples": ["20:1", 0], "vae": ["4", 2]}  # through the Reroute outside
    assert api["9"]["inputs"]["images"] == ["20:3:2", 0]


def test_a_bypassed_instance_passes_its_input_through_and_sends_none_of_its_nodes(tmp_path):
    """An "Upscale" subgraph (ImageScale inside) between VAEDecode and SaveImage, bypassed: the SaveImage reads the
    VAEDecode's image, as the front end sends a bypassed node (each output takes the first input of its type)."""
    from nodegraph.comfy.reader import read_workflow

    ui = default_ui()
    scale = {"id": 1, "type": "ImageScale", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 301}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [302]}],
             "widgets_values": ["nearest-exact", 32, 32, "disabled"]}
    ui["definitions"] = {"subgraphs": [{
        "id": "upscale", "name": "Upscale", "nodes": [scale],
        "links": [{"id": 301, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "IMAGE"},
                  {"id": 302, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "IMAGE"}],
        "inputs": [{"name": "image", "type": "IMAGE", "linkIds": [301]}],
        "outputs": [{"name": "IMAGE", "type": "IMAGE", "linkIds": [302]}]}]}
    ui["nodes"].append({"id": 30, "type": "upscale", "mode": 4,
                        "inputs": [{"name": "image", "type": "IMAGE", "link": 9}],
                        "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [40]}]})
    ui["links"] = [link for link in ui["links"] if link[0] != 9] + [[9, 8, 0, 30, 0, "IMAGE"],
                                                                   [40, 30, 0, 9, 0, "IMAGE"]]
    next(n for n in ui["nodes"] if n["id"] == 9)["inputs"][0]["link"] = 40
    (tmp_path / "bypassed.json").write_text(json.dumps(ui))
    api = read_workflow(tmp_path / "bypassed.json").api
    assert api["9"]["inputs"]["images"] == ["8", 0]
    assert not any(key.startswith("30") for key in api)
    ui["nodes"][-1]["mode"] = 0  # not bypassed: the inner ImageScale is sent between them
    (tmp_path / "active.json").write_text(json.dumps(ui))
    api = read_workflow(tmp_path / "active.json").api
    assert api["9"]["inputs"]["images"] == ["30:1", 0] and api["30:1"]["inputs"]["image"] == ["8", 0]
