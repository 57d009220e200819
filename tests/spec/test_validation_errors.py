"""One test per validation error: each asserts the stable code, the node it names and the line."""

from nodegraph.core import Node, Ports, Registry, node
from nodegraph.core.types import Latent, Tensor


@node("MakeTensor", register=False)
class MakeTensor(Node):
    """A generic tensor (test node)."""

    class Outputs(Ports):
        tensor: Tensor

    def run(self, i, ctx):
        return {"tensor": None}


@node("Denoise", register=False)
class Denoise(Node):
    """Takes latents (test node)."""

    class Inputs(Ports):
        latents: Latent

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        return {"latents": i.latents}


def registry():
    reg = Registry(plugins=False)
    reg.add(MakeTensor)
    reg.add(Denoise)
    return reg


def test_yaml_syntax_error(issues, one):
    error = one(issues("nodes:\n  a: {type: Int, value: 1\noutputs: {}\n"), "yaml_syntax")
    assert error.line == 3 and error.file.endswith("g.yaml")


def test_duplicate_key_in_a_node(issues, one):
    error = one(issues("""
        nodes:
          a:
            type: Int
            value: 1
            value: 2
        outputs: {x: $a.value}
        """), "duplicate_key")
    assert (error.path, error.line) == ("nodes.a.value", 5)


def test_duplicate_node_id(issues, one):
    error = one(issues("""
        nodes:
          a: {type: Int, value: 1}
          a: {type: Int, value: 2}
        outputs: {x: $a.value}
        """), "duplicate_node_id")
    assert (error.path, error.line) == ("nodes.a", 3)


def test_unknown_node_type_suggests_the_closest_name(issues, one):
    error = one(issues("""
        nodes:
          a: {type: Int, value: 1}
          s:
            type: Ad
            a: $a.value
            b: 2
        outputs: {x: $s.value}
        """), "unknown_node_type")
    assert (error.path, error.line) == ("nodes.s.type", 4)
    assert "`Ad`" in error.message and "did you mean `Add`?" in error.hint


def test_unknown_node_version_lists_the_available_ones(issues, one):
    error = one(issues("nodes:\n  a: {type: Int@7, value: 1}\noutputs: {x: $a.value}\n"), "unknown_node_version")
    assert error.line == 2 and "Int@1" in error.hint


def test_unknown_input_suggests_the_closest_port(issues, one):
    error = one(issues("nodes:\n  s: {type: Add, a: 1, bb: 2, b: 3}\noutputs: {x: $s.value}\n"), "unknown_input")
    assert (error.path, error.line) == ("nodes.s.bb", 2) and "did you mean `b`?" in error.hint


def test_missing_required_input_points_at_the_node(issues, one):
    error = one(issues("""
        nodes:
          s:
            type: Add
            a: 1
        outputs: {x: $s.value}
        """), "missing_input")
    assert (error.path, error.line, error.col) == ("nodes.s", 2, 3)
    assert "`b`" in error.message and "Add@1" in error.message


def test_reference_to_a_missing_node(issues, one):
    error = one(issues("nodes:\n  s: {type: Add, a: $nope.value, b: 1}\noutputs: {x: $s.value}\n"), "unknown_node")
    assert (error.path, error.line) == ("nodes.s.a", 2) and "`nope`" in error.message


def test_reference_to_a_missing_port_suggests_the_closest(issues, one):
    error = one(issues("""
        nodes:
          a: {type: Int, value: 1}
          s: {type: Add, a: $a.valu, b: 1}
        outputs: {x: $s.value}
        """), "unknown_port")
    assert (error.path, error.line) == ("nodes.s.a", 3) and "$a.value" in error.hint


def test_reference_to_a_missing_graph_input(issues, one):
    error = one(issues("""
        inputs:
          steps: {type: int, default: 3}
        nodes:
          r: {type: Range, stop: $inputs.stpes}
        outputs: {x: $r.values}
        """), "unknown_graph_input")
    assert (error.path, error.line) == ("nodes.r.stop", 4) and "$inputs.steps" in error.hint


def test_type_mismatch_names_both_ends_and_both_types(issues, one):
    error = one(issues("""
        nodes:
          f: {type: Float, value: 2.5}
          r: {type: Range, stop: $f.value}
        outputs: {x: $r.values}
        """), "type_mismatch")
    assert (error.path, error.line) == ("nodes.r.stop", 3)
    for part in ("`$f.value`", "float", "Float@1", "`stop`", "`r`", "Range@1", "takes int"):
        assert part in error.message


def test_int_feeds_float_but_a_generic_tensor_does_not_feed_latents(issues, one):
    assert issues("nodes:\n  i: {type: Int, value: 2}\n  s: {type: Add, a: $i.value, b: 1}\n"
                  "outputs: {x: $s.value}\n") == []
    error = one(issues("""
        nodes:
          t: {type: MakeTensor}
          d: {type: Denoise, latents: $t.tensor}
        outputs: {x: $d.latents}
        """, registry=registry()), "type_mismatch")
    assert "Tensor" in error.message and "Latent" in error.message and error.line == 3


def test_parameter_out_of_range(issues, one):
    error = one(issues("nodes:\n  s: {type: Sleep, seconds: -1}\noutputs: {x: $s.value}\n"), "out_of_range")
    assert (error.path, error.line) == ("nodes.s.seconds", 2)
    assert "greater than or equal to 0" in error.message and ">= 0" in error.hint


def test_literal_of_the_wrong_type(issues, one):
    error = one(issues("nodes:\n  i: {type: Int, value: ten}\noutputs: {x: $i.value}\n"), "invalid_value")
    assert (error.path, error.line) == ("nodes.i.value", 2) and "'ten'" in error.message


def test_literal_for_a_port_only_a_node_can_feed(issues, one):
    error = one(issues("nodes:\n  d: {type: Denoise, latents: 3}\noutputs: {x: $d.latents}\n",
                       registry=registry()), "literal_not_allowed")
    assert error.line == 2 and "Latent" in error.message


def test_cycle_lists_the_nodes_in_it(issues, one):
    error = one(issues("""
        nodes:
          a: {type: Add, a: $c.value, b: 1}
          b: {type: Add, a: $a.value, b: 1}
          c: {type: Add, a: $b.value, b: 1}
          d: {type: Add, a: $c.value, b: 1}
        outputs: {x: $d.value}
        """), "cycle")
    assert (error.path, error.line) == ("nodes.a", 2)
    assert "`a` → `b` → `c` → `a`" in error.message and "`d`" not in error.message


def test_node_reading_its_own_output_is_a_cycle(issues, one):
    error = one(issues("nodes:\n  a: {type: Add, a: $a.value, b: 1}\noutputs: {x: $a.value}\n"), "cycle")
    assert "`a`" in error.message and error.line == 2


def test_graph_output_referring_to_nothing(issues, one):
    error = one(issues("nodes:\n  a: {type: Int, value: 1}\noutputs:\n  x: $a.value\n  y: $b.value\n"),
                "dangling_output")
    assert (error.path, error.line) == ("outputs.y", 5)


def test_node_that_feeds_no_output_is_a_warning_not_an_error(issues, one):
    found = issues("nodes:\n  a: {type: Int, value: 1}\n  b: {type: Int, value: 2}\noutputs: {x: $a.value}\n")
    warning = one(found, "unused_node")
    assert (warning.path, warning.line, warning.severity) == ("nodes.b", 3, "warning")


def test_malformed_references(issues):
    found = issues("""
        nodes:
          a: {type: Add, a: $justaname, b: $state.x}
          s: {type: String, value: "$$literal"}
        outputs: {x: $a.value, y: $s.value}
        """)
    assert [(e.code, e.path) for e in found] == [("bad_reference", "nodes.a.a"), ("bad_reference", "nodes.a.b")]


def test_reserved_and_malformed_node_ids(issues):
    found = issues("nodes:\n  inputs: {type: Int, value: 1}\n  2x: {type: Int, value: 1}\noutputs: {}\n")
    assert [(e.code, e.line) for e in found if e.is_error] == [("invalid_node_id", 2), ("invalid_node_id", 3)]


def test_unknown_top_level_key_suggests_the_right_one(issues, one):
    error = one(issues("nodes:\n  a: {type: Int, value: 1}\noutput: {x: $a.value}\n"), "unknown_field")
    assert error.line == 3 and "did you mean `outputs`?" in error.hint


def test_every_error_is_reported_at_once_sorted_with_a_count(write):
    import pytest

    from nodegraph import load_graph
    from nodegraph.spec.errors import ValidationFailed

    path = write("many.yaml", """
        nodes:
          z: {type: Nope}
          a: {type: Add, a: 1}
          i: {type: Int, value: x}
        outputs: {x: $q.value}
        """)
    with pytest.raises(ValidationFailed) as caught:
        load_graph(path)
    failed = caught.value
    assert [e.line for e in failed.errors] == sorted(e.line for e in failed.errors)
    assert set(failed.codes) == {"unknown_node_type", "missing_input", "invalid_value", "dangling_output"}
    report = failed.report().splitlines()
    assert report[0].startswith(f"{path}:2:") and report[0].endswith("[unknown_node_type]")
    assert report[-1] == f"4 errors in {path}"
