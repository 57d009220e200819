"""An instance's own value for a subgraph input becomes a PrimitiveNode under an id of its own namespace
(`<instance>:[input <name>]`): an input named like an inner node ("1", "2") no longer takes that node's id, which
wired the wrong output silently; a crafted inner string id equal to that id is refused instead of miswired."""

from __future__ import annotations

import json

import pytest

from test_subgraphs import in_a_subgraph


def own_seed_named(name: str) -> dict:
    """The subgraph of test_subgraphs (inner KSampler 1, VAEDecode 2) with its `seed` input renamed `name` and
    given by the instance's own value 7 instead of a link."""
    ui = in_a_subgraph(widgets_values=[7])
    ui["definitions"]["subgraphs"][0]["inputs"][5]["name"] = name
    ui["nodes"][-1]["inputs"] = [slot for slot in ui["nodes"][-1]["inputs"] if slot["name"] != "seed"]
    ui["links"] = [link for link in ui["links"] if link[0] != 20]  # the PrimitiveNode's link into the instance
    return ui


@pytest.mark.parametrize("name", ["1", "2"])
def test_a_subgraph_input_named_like_an_inner_node_id_wires_its_own_value(tmp_path, name):
    from nodegraph.comfy.reader import read_workflow

    path = tmp_path / "sub.json"
    path.write_text(json.dumps(own_seed_named(name)))
    api = read_workflow(path).api
    assert api["20:1"]["class_type"] == "KSampler" and api["20:1"]["inputs"]["seed"] == 7
    assert api["20:2"]["class_type"] == "VAEDecode" and api["20:2"]["inputs"]["samples"] == ["20:1", 0]
    assert api["9"]["inputs"]["images"] == ["20:2", 0]


def test_an_inner_string_id_equal_to_a_value_nodes_id_is_refused_not_miswired(tmp_path):
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.reader import read_workflow

    ui = own_seed_named("seed")
    subgraph = ui["definitions"]["subgraphs"][0]
    subgraph["nodes"][1]["id"] = "[input seed]"  # the VAEDecode, under the id the instance's value node takes
    for link in subgraph["links"]:
        for end in ("origin_id", "target_id"):
            if link[end] == 2:
                link[end] = "[input seed]"
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(ui))
    with pytest.raises(ComfyError, match=r"two nodes have the id 20:\[input seed\] once the subgraphs are expanded"):
        read_workflow(path)
