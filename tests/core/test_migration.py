"""Migrations between node-type versions: declared on the node class, resolved by the registry."""

import pytest

from nodegraph.core import Node, NodeDefinitionError, Ports, Registry, node
from nodegraph.core.migration import Migration, MigrationProblem
from nodegraph.core.registry import UnknownNodeType


def blur(version, migrations=(), inputs=("x", "sigma")):
    namespace = {"__annotations__": {name: float for name in inputs}}

    class Inputs(Ports):
        __annotations__ = namespace["__annotations__"]

    class Outputs(Ports):
        value: float

    cls = type(f"Blur{version}", (Node,), {"__doc__": f"Blur v{version}.", "Inputs": Inputs, "Outputs": Outputs,
                                           "run": lambda self, i, ctx: {"value": 0.0}})
    return node("t.Blur", version=version, register=False, migrations=migrations)(cls)


V1_TO_V2 = Migration(1, 2, rename={"radius": "sigma"}, convert={"sigma": lambda r: r / 2}, remove=("quality",))


def test_a_migration_goes_forward_only():
    with pytest.raises(NodeDefinitionError):
        Migration(2, 1)
    with pytest.raises(NodeDefinitionError):
        Migration(0, 1)


def test_a_migration_must_target_this_version_or_an_older_one_and_rename_to_real_inputs():
    with pytest.raises(NodeDefinitionError, match="version 3 is declared on version 2"):
        blur(2, [Migration(2, 3)])
    with pytest.raises(NodeDefinitionError, match="not inputs"):
        blur(2, [Migration(1, 2, rename={"radius": "sigmaa"})])


def test_apply_renames_converts_and_removes_keeping_order():
    out = V1_TO_V2.apply({"x": 1.0, "radius": 4.0, "quality": 3}, is_literal=lambda v: True)
    assert out == {"x": 1.0, "sigma": 2.0} and list(out) == ["x", "sigma"]
    with pytest.raises(MigrationProblem) as caught:
        V1_TO_V2.apply({"radius": "$inputs.r"}, is_literal=lambda v: not str(v).startswith("$"))
    assert caught.value.name == "radius"
    assert V1_TO_V2.describe() == "`radius` renamed `sigma`, `quality` removed"


def test_the_registry_resolves_pinned_unpinned_and_missing_versions():
    registry = Registry(builtins=False, plugins=False)
    registry.add(blur(2, [V1_TO_V2]))
    assert registry.resolve("t.Blur@2", ["x"])[1] == []
    info, chain = registry.resolve("t.Blur@1", ["x", "radius"])
    assert info.version == 2 and chain == [V1_TO_V2]
    assert registry.resolve("t.Blur", ["x", "radius"])[1] == [V1_TO_V2]  # written before the change
    assert registry.resolve("t.Blur", ["x", "sigma"])[1] == []
    assert registry.resolve("t.Blur", ["x", "typo"])[1] == []  # fits no version: validation reports `typo`
    with pytest.raises(UnknownNodeType) as caught:
        registry.resolve("t.Blur@5", [])
    assert caught.value.code == "unknown_node_version"
    assert registry.migratable_versions("t.Blur") == [1]
