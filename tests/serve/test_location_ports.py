"""Which inputs name models or files, the node types declare by type (core/types.py ModelSource / FilePath): the
server confines a plugin's `weights: FilePath` like LoadImage's `path`, whatever the port is called, and leaves
a plain `str` port alone even when its name sounds like a file."""

from __future__ import annotations

import pytest

from nodegraph.core import Node, Ports, Registry, node
from nodegraph.core.types import FilePath, Image, ModelSource
from nodegraph.serve.documents import Documents, Rejected


@node("plugin.Stylize", version=1, register=False)
class Stylize(Node):
    """A third-party node: reads its own weights file and a model."""

    class Inputs(Ports):
        weights: FilePath = ""
        ckpt: ModelSource = "builtin:digits"
        profile: str = ""  # a plain string: no location, whatever it is called

    class Outputs(Ports):
        image: Image

    def run(self, i, ctx):
        raise AssertionError("never run here")


@pytest.fixture
def setup(tmp_path):
    from nodegraph import loads_graph

    (tmp_path / "models").mkdir()
    (tmp_path / "graphs").mkdir()
    registry = Registry(plugins=False)
    registry.add(Stylize)
    text = ("nodegraph: 1\ninputs:\n  weights: {type: str, default: ''}\n  ckpt: {type: str, default: builtin:digits}\n"
            "  profile: {type: str, default: ''}\n"
            "nodes:\n  s: {type: plugin.Stylize, weights: $inputs.weights, ckpt: $inputs.ckpt, profile: $inputs.profile}\n"
            "outputs: {image: $s.image}\n")
    graph = loads_graph(text, registry=registry)
    documents = Documents(tmp_path / "data", [tmp_path / "graphs"], [tmp_path / "models"], store=None)
    return documents, graph, tmp_path


def codes(documents, graph, **values) -> list[str]:
    try:
        documents.check_values(graph, {"weights": "", "ckpt": "builtin:digits", "profile": "", **values})
    except Rejected as exc:
        return [e.code for e in exc.errors]
    return []


def test_a_plugin_port_typed_as_a_file_path_is_confined_like_path(setup):
    documents, graph, root = setup
    assert codes(documents, graph, weights="/etc/passwd") == ["path_not_allowed"]
    assert codes(documents, graph, weights="relative.safetensors") == ["path_not_allowed"]
    assert codes(documents, graph, weights=str(root / "models" / ".." / "secret")) == ["path_not_allowed"]
    assert codes(documents, graph, weights=str(root / "models" / "style.safetensors")) == []


def test_a_plugin_port_typed_as_a_model_source_follows_the_model_rules(setup):
    documents, graph, root = setup
    assert codes(documents, graph, ckpt="/etc") == ["model_not_allowed"]
    assert codes(documents, graph, ckpt="CompVis/stable-diffusion-v1-4") == []
    assert codes(documents, graph, ckpt=str(root / "models")) == []


def test_a_plain_string_port_is_no_location_whatever_its_name(setup):
    documents, graph, _ = setup
    assert codes(documents, graph, profile="/etc/passwd") == []
    port = graph.checked.nodes["s"].inputs
    assert (port["weights"].location, port["ckpt"].location, port["profile"].location) == ("file", "model", None)
