"""Node versions with migrations: old graphs still run (with a warning); `upgrade` rewrites them, keeping
comments and layout."""

import pytest

from nodegraph import Field, Node, Ports, Registry, load_graph
from nodegraph.cli import main
from nodegraph.core import REGISTRY, node
from nodegraph.core.migration import Migration
from nodegraph.hub.migrate import upgrade_text
from nodegraph.spec.errors import ValidationFailed


@node("testing.Blur", version=1, register=False)
class BlurV1(Node):
    """Version 1: `radius` in pixels."""

    class Inputs(Ports):
        x: float
        radius: float = 2.0

    class Outputs(Ports):
        value: float

    def run(self, i, ctx):
        return {"value": i.x + i.radius}


RADIUS_TO_SIGMA = Migration(1, 2, rename={"radius": "sigma"}, convert={"sigma": lambda radius: radius / 2},
                            note="`radius` became `sigma` (half the radius)")


@node("testing.Blur", version=2, register=False, migrations=[RADIUS_TO_SIGMA])
class BlurV2(Node):
    """Version 2: `sigma`, half the old radius; same result."""

    class Inputs(Ports):
        x: float
        sigma: float = Field(1.0, gt=0)

    class Outputs(Ports):
        value: float

    def run(self, i, ctx):
        return {"value": i.x + 2 * i.sigma}


@node("testing.Blur", version=3, register=False,
      migrations=[RADIUS_TO_SIGMA, Migration(2, 3, rename={"x": "image"}, note="`x` became `image`")])
class BlurV3(Node):
    """Version 3: `x` renamed `image`."""

    class Inputs(Ports):
        image: float
        sigma: float = Field(1.0, gt=0)

    class Outputs(Ports):
        value: float

    def run(self, i, ctx):
        return {"value": i.image + 2 * i.sigma}


def registry_with(*classes):
    registry = Registry(plugins=False)
    for cls in classes:
        registry.add(cls)
    return registry


OLD = """\
# A graph written for testing.Blur version 1.
nodegraph: 1
inputs:
  x: {type: float, default: 1.0}   # the input
nodes:
  blur:
    type: testing.Blur@1   # pinned to the old version
    x: $inputs.x
    radius: 4.0            # pixels
  again: {type: testing.Blur, x: $blur.value, radius: 2.0}
outputs:
  y: $again.value  # result
"""

# written by hand: what `upgrade` must produce from OLD for version 2 (only the migrated values change;
# end-of-line comments keep their column)
UPGRADED = """\
# A graph written for testing.Blur version 1.
nodegraph: 1
inputs:
  x: {type: float, default: 1.0}   # the input
nodes:
  blur:
    type: testing.Blur@2   # pinned to the old version
    x: $inputs.x
    sigma: 2.0             # pixels
  again: {type: testing.Blur, x: $blur.value, sigma: 1.0}
outputs:
  y: $again.value  # result
"""


def test_a_graph_for_version_1_runs_on_version_2_with_a_warning_naming_the_migration(write):
    path = write("old.yaml", OLD)
    assert load_graph(path, registry=registry_with(BlurV1)).run() == {"y": 7.0}  # what version 1 computes
    graph = load_graph(path, registry=registry_with(BlurV2))
    assert graph.run() == {"y": 7.0}
    warnings = {w.path: w for w in graph.warnings}
    assert set(warnings) == {"nodes.blur.type", "nodes.again.type"}  # pinned, and unpinned with old names
    blur = warnings["nodes.blur.type"]
    assert blur.code == "migrated_node" and blur.line == 7
    assert "testing.Blur@1" in blur.message and "runs as testing.Blur@2" in blur.message
    assert "`radius` became `sigma`" in blur.message and "nodegraph upgrade" in blur.hint


def test_an_installed_old_version_is_used_as_pinned_without_migrating(write):
    graph = load_graph(write("old.yaml", OLD), registry=registry_with(BlurV1, BlurV2))
    assert graph.checked.nodes["blur"].label == "testing.Blur@1" and graph.checked.nodes["again"].label == \
        "testing.Blur@2"
    assert [w.path for w in graph.warnings] == ["nodes.again.type"]


def test_migrations_chain_across_versions_no_longer_installed(write):
    graph = load_graph(write("old.yaml", OLD), registry=registry_with(BlurV3))
    assert graph.run() == {"y": 7.0}
    assert "`radius` became `sigma` (half the radius); `x` became `image`" in graph.warnings[0].message


def test_a_connected_value_that_needs_converting_is_an_error_at_that_input(write):
    path = write("g.yaml", "inputs: {r: {type: float}}\nnodes:\n  b: {type: testing.Blur@1, x: 1.0, "
                           "radius: $inputs.r}\noutputs: {y: $b.value}\n")
    with pytest.raises(ValidationFailed) as caught:
        load_graph(path, registry=registry_with(BlurV2))
    (error,) = caught.value.errors
    assert (error.code, error.path, error.line) == ("migration_failed", "nodes.b.radius", 3)


def test_a_version_with_no_migration_from_it_is_still_unknown(write):
    path = write("g.yaml", "nodes:\n  b: {type: testing.Blur@7, x: 1.0}\noutputs: {y: $b.value}\n")
    with pytest.raises(ValidationFailed) as caught:
        load_graph(path, registry=registry_with(BlurV2))
    assert caught.value.codes == ["unknown_node_version"]


def test_upgrade_rewrites_only_the_migrated_values_and_keeps_comments_and_layout(write):
    result = upgrade_text(OLD, registry_with(BlurV2))
    assert result.text == UPGRADED
    assert len(result.changes) == 2
    graph = load_graph(write("new.yaml", result.text), registry=registry_with(BlurV2))
    assert graph.warnings == [] and graph.run() == {"y": 7.0}


def test_upgrade_of_an_up_to_date_graph_changes_nothing():
    assert upgrade_text(UPGRADED, registry_with(BlurV2)).changes == []


def test_upgrade_reaches_the_newest_version_through_repeat_bodies():
    text = ("nodes:\n  r:\n    type: repeat\n    over: [1, 2]\n    state: {v: 0.0}\n    nodes:\n"
            "      b: {type: testing.Blur@1, x: $state.v, radius: 2.0}  # inside the loop\n"
            "    next: {v: $b.value}\noutputs: {v: $r.v}\n")
    # the line grew past the comment's column, so the comment moves right after it
    assert "      b: {type: testing.Blur@3, image: $state.v, sigma: 1.0} # inside the loop\n" in \
        upgrade_text(text, registry_with(BlurV3)).text


@pytest.fixture
def installed_v2(monkeypatch):
    """testing.Blur@2 in the default registry for the CLI, removed afterwards."""
    REGISTRY.names()  # load the built-in types first
    monkeypatch.setitem(REGISTRY._types, "testing.Blur", {2: BlurV2.node_type})
    monkeypatch.setitem(REGISTRY._migrations, "testing.Blur", {1: RADIUS_TO_SIGMA})


def test_the_upgrade_command_prints_a_diff_and_rewrites_the_file(write, capsys, installed_v2):
    path = write("old.yaml", OLD)
    assert main(["upgrade", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "\n-    radius: 4.0            # pixels\n" in out and "\n+    sigma: 2.0             # pixels\n" in out
    assert "\n     x: $inputs.x\n" in out  # unchanged lines are context, not rewritten
    assert path.read_text() == OLD
    assert main(["upgrade", str(path)]) == 0
    assert path.read_text() == UPGRADED
    assert main(["validate", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["upgrade", str(path)]) == 0
    assert "already up to date" in capsys.readouterr().out


def test_upgrade_refuses_to_guess_and_never_writes_an_invalid_graph(write, capsys, installed_v2):
    connected = write("c.yaml", "inputs: {r: {type: float}}\nnodes:\n  b: {type: testing.Blur@1, x: 1.0, "
                                "radius: $inputs.r}\noutputs: {y: $b.value}\n")
    assert main(["upgrade", str(connected)]) == 2
    assert "`radius` is connected to `$inputs.r`" in capsys.readouterr().err
    broken = write("b.yaml", OLD.replace("outputs:\n  y: $again.value", "outputs:\n  y: $nowhere.value"))
    assert main(["upgrade", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "dangling_output" in err and "was not changed" in err
    assert broken.read_text() == OLD.replace("outputs:\n  y: $again.value", "outputs:\n  y: $nowhere.value")


def test_nodegraph_nodes_lists_the_migrations(capsys, installed_v2):
    assert main(["nodes", "testing.Blur"]) == 0
    assert "migrates graphs written for testing.Blur@1: `radius` became `sigma` (half the radius)" in \
        capsys.readouterr().out
