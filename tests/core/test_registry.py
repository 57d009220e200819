import sys
import textwrap

import pytest

from nodegraph.core import Node, NodeDefinitionError, Ports, Registry, node
from nodegraph.core.registry import REGISTRY, UnknownNodeType


def _versioned(version, doc="Scale."):
    @node("Scale", version=version, register=False)
    class Scale(Node):
        __doc__ = doc

        class Outputs(Ports):
            value: float

        def run(self, i, ctx):
            return {"value": float(version)}

    return Scale


def test_latest_version_by_default_and_pins_with_at():
    reg = Registry(builtins=False, plugins=False)
    one, two = _versioned(1), _versioned(2)
    reg.add(two)
    reg.add(one)
    assert reg.get("Scale").cls is two and reg.get("Scale@1").cls is one
    with pytest.raises(UnknownNodeType) as caught:
        reg.get("Scale@3")
    assert caught.value.code == "unknown_node_version" and "Scale@1, Scale@2" in caught.value.hint


def test_unknown_names_get_a_did_you_mean():
    with pytest.raises(UnknownNodeType) as caught:
        REGISTRY.get("Multiplyy")
    assert caught.value.code == "unknown_node_type" and "`Multiply`" in caught.value.hint
    with pytest.raises(UnknownNodeType) as caught:
        REGISTRY.get("add")
    assert "`Add`" in caught.value.hint


def test_two_classes_cannot_claim_one_name_and_version():
    reg = Registry(builtins=False, plugins=False)
    reg.add(_versioned(1))
    reg.add(reg.get("Scale").cls)  # the same class again is fine
    with pytest.raises(NodeDefinitionError, match="defined twice"):
        reg.add(_versioned(1))


def test_builtin_nodes_are_registered():
    assert {"Int", "Float", "Add", "Range", "Sleep", "SolidImage"} <= set(REGISTRY.names())


def _make_dist(root, name, module_source, entry):
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[nodegraph.nodes]\n{entry}\n")


def test_a_third_party_package_adds_node_types_through_the_entry_point_group(tmp_path, monkeypatch):
    _make_dist(tmp_path, "ng_plugin_demo", """
        from nodegraph.core import Node, Ports, node

        @node("demo.Triple", version=1, register=False)
        class Triple(Node):
            \"\"\"Three times x.\"\"\"
            class Inputs(Ports):
                x: float
            class Outputs(Ports):
                value: float
            def run(self, i, ctx):
                return {"value": 3 * i.x}
        """, "demo = ng_plugin_demo")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    assert reg.get("demo.Triple").cls.__module__ == "ng_plugin_demo"
    assert "Add" in reg.names()

    from nodegraph import loads_graph

    graph = loads_graph("nodes:\n  t: {type: demo.Triple, x: 2}\noutputs: {v: $t.value}\n", registry=reg)
    assert graph.run() == {"v": 6.0}
    monkeypatch.delitem(sys.modules, "ng_plugin_demo")


def test_a_broken_plugin_is_reported_and_does_not_break_the_others(tmp_path, monkeypatch):
    _make_dist(tmp_path, "ng_plugin_broken", "raise ImportError('needs libfoo')\n", "broken = ng_plugin_broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    with pytest.warns(RuntimeWarning, match="needs libfoo"):
        names = reg.names()
    assert "Add" in names and "ng_plugin_broken" in reg.plugin_problems[0]
